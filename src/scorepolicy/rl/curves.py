"""Learning curves of an improvement run: evaluation points through the project's own evaluation
(`scorepolicy.evaluation.evaluate`, no second rollout loop), appended to curve.csv and TensorBoard."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scorepolicy.core.task import Task
from scorepolicy.evaluation import EvalConfig, evaluate
from scorepolicy.rl.common import rng_state, set_rng_state

CURVE_FIELDS = (
    "env_step",
    "wall_time_s",
    "success_rate",
    "success_lo",
    "success_hi",
    "mean_score",
    "n_episodes",
)


@dataclass
class CurveConfig:
    """Which episodes a curve point evaluates."""

    episodes: int = 50
    """Episodes per point (seeds seed .. seed+episodes-1)."""
    seed: int = 0
    """First evaluation seed (validation seeds: never the training seeds, never the test seeds)."""
    n_envs: int = 50
    """Environments per evaluation wave."""


class Curve:
    """Evaluates policies at env steps and appends the points to run_dir/curve.csv and run_dir/tb."""

    def __init__(self, run_dir: Path, task: Task, cfg: CurveConfig, *, elapsed: float = 0.0) -> None:
        self.path = Path(run_dir) / "curve.csv"
        self.tb_dir = Path(run_dir) / "tb"
        self.task, self.cfg = task, cfg
        self._start = time.monotonic() - elapsed
        self._writer: Any = None

    def elapsed(self) -> float:
        """Seconds of improvement so far (carried over a resume)."""
        return time.monotonic() - self._start

    def rows(self) -> list[dict[str, str]]:
        """The points written so far."""
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate(self, env_step: int) -> None:
        """Forget points after `env_step` (on resume from a checkpoint taken at that step)."""
        kept = [r for r in self.rows() if int(r["env_step"]) <= env_step]
        self._write(kept, mode="w")

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        new = mode == "w" or not self.path.is_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, mode, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CURVE_FIELDS)
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def point(self, policy: Any, env_step: int) -> dict[str, Any]:
        """Evaluate `policy` on the curve's seeds (global RNG untouched) and record the point."""
        saved = rng_state()
        try:
            cfg = EvalConfig(
                episodes=self.cfg.episodes,
                seed=self.cfg.seed,
                n_envs=min(self.cfg.n_envs, self.cfg.episodes),
                progress=False,
            )
            result = evaluate(policy, self.task, cfg)
        finally:
            set_rng_state(saved)
        lo, hi = result["success_ci"]
        row = {
            "env_step": env_step,
            "wall_time_s": round(self.elapsed(), 2),
            "success_rate": result["success_rate"],
            "success_lo": lo,
            "success_hi": hi,
            "mean_score": result.get("mean_score", ""),
            "n_episodes": result["n_episodes"],
        }
        self._write([row], mode="a")
        self._tensorboard(row)
        return result

    def _tensorboard(self, row: dict[str, Any]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.tb_dir))
        step = int(row["env_step"])
        for key in ("success_rate", "success_lo", "success_hi", "mean_score", "wall_time_s"):
            if row[key] != "":
                self._writer.add_scalar(f"eval/{key}", float(row[key]), step)
        self._writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
