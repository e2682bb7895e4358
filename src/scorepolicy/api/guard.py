"""Guarding a trained run: calibrate its FIPER monitor (rollouts of the run on its task) and save it."""

from __future__ import annotations

from pathlib import Path

from scorepolicy.api.runs import load_policy, run_task_name
from scorepolicy.envs.registry import get_task
from scorepolicy.evaluation.rollout import RolloutOptions
from scorepolicy.guard import GuardSettings, Monitor, calibrate
from scorepolicy.guard.calibrate import CALIBRATION_SEED


def calibrate_run(
    run_dir: Path,
    episodes: int = 50,
    delta: float = 0.05,
    *,
    out: Path | None = None,
    seed: int = CALIBRATION_SEED,
    settings: GuardSettings | None = None,
    nfe: int | None = None,
    sampler: str | None = None,
    n_envs: int = 50,
) -> Monitor:
    """Calibrate a monitor for a run's policy on its task (seeds seed..); saved to `out` when given."""
    policy = load_policy(run_dir, nfe, sampler)
    task = get_task(run_task_name(run_dir))
    options = RolloutOptions(n_envs=n_envs, progress=False)
    monitor = calibrate(policy, task, episodes, delta, seed=seed, settings=settings, options=options)
    monitor.info["run"] = str(run_dir)
    if out is not None:
        monitor.save(out)
    return monitor
