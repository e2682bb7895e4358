"""Policy families by `PolicyConfig.kind`: the one place that maps a kind to its class."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scorepolicy.errors import ScorePolicyError

if TYPE_CHECKING:
    from scorepolicy.policies.base import ChunkPolicy
    from scorepolicy.policies.config import PolicyConfig


def policy_class(kind: str) -> type[ChunkPolicy]:
    """The class of a policy family ('score', 'mse-bc', 'ddpm')."""
    if kind == "score":
        from scorepolicy.policies.score_policy import ScorePolicy

        return ScorePolicy
    if kind == "mse-bc":
        from scorepolicy.policies.baselines import MSEBCPolicy

        return MSEBCPolicy
    if kind == "ddpm":
        from scorepolicy.policies.baselines import DDPMPolicy

        return DDPMPolicy
    raise ScorePolicyError(f"unknown policy kind '{kind}'; valid kinds: score, mse-bc, ddpm")


def build_policy(cfg: PolicyConfig) -> ChunkPolicy:
    """A fresh policy of the family named by cfg.kind."""
    return policy_class(cfg.kind)(cfg)


IMPROVED_FORMAT = "scorepolicy/improved-policy"
IMPROVED_LOADER = "scorepolicy.rl.common"
"""Module (imported lazily, by path: policies/ never imports rl/ at import time) whose
`improved_policy_class(kind)` gives the class of an improved policy ('dsrl', 'residual')."""


def improved_policy_class(directory: Path) -> Any:
    """The class of the improved policy (RL on a frozen base) saved in `directory`, or None when the
    directory holds an ordinary policy."""
    try:
        meta = json.loads((Path(directory) / "config.json").read_text())
    except (OSError, ValueError):
        return None  # the ordinary loader reports missing or invalid files
    if not isinstance(meta, dict) or meta.get("format") != IMPROVED_FORMAT:
        return None
    return importlib.import_module(IMPROVED_LOADER).improved_policy_class(str(meta.get("kind")))
