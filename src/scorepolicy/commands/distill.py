"""`scorepolicy distill`: a 1-3 step student of a trained run by consistency distillation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from scorepolicy.training.distill import DistillConfig


@dataclass
class Distill:
    """Distil a trained score policy into a 1-3 step student that reproduces its NFE-20 samples
    (consistency distillation); the student is an ordinary run (eval, latency, select)."""

    run: tyro.conf.Positional[Path]
    """Teacher run directory (or a snapshot of one, e.g. RUN/best)."""
    out: Path
    """Run directory of the student (must not exist or be empty)."""
    data: Path | None = None
    """The teacher's dataset (default: the path in its train_config.json)."""
    distill: Annotated[DistillConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=DistillConfig)


def run_distill(cmd: Distill) -> str:
    """Run the distillation; the summary line to print."""
    from scorepolicy.api.distill import distill_run

    result = distill_run(cmd.run, cmd.out, cmd.distill, cmd.data)
    loss = f", final loss {result.losses[-1]:.5f}" if result.losses else ""
    return (
        f"distilled {result.steps} steps in {result.seconds / 60:.1f} min{loss}; student (NFE {cmd.distill.nfe}): "
        f"{result.run_dir} (evaluate it with scorepolicy eval {result.run_dir})"
    )
