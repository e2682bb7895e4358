"""Argument dataclasses and runners of the CLI subcommands that are more than a call into `scorepolicy.api`.

- `data`: `scorepolicy data info | validate | convert | plot | offline-eval | generate`
- `generate`: `scorepolicy data generate` (scripted-expert demonstrations into a replay zarr)
- `compare`: `scorepolicy compare` and `scorepolicy plan`
"""
