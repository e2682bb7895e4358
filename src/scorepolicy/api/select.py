"""Choosing among a run's kept snapshots by rollouts on validation seeds, and installing the best."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from scorepolicy.api.evaluation import evaluate_run
from scorepolicy.api.runs import install_snapshot, run_task_name
from scorepolicy.envs.registry import get_task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig
from scorepolicy.files import atomic_write_json

SELECTION_KEYS = ("mean_score", "mean_max_coverage", "success_rate", "success_ci", "mean_length", "n_errors")


def evaluate_snapshots(
    run_dir: Path,
    cfg: EvalConfig,
    *,
    task: str | None = None,
    nfe: int | None = None,
    sample_sigma_max: float | None = None,
) -> list[dict[str, Any]]:
    """One row of results (SELECTION_KEYS) per kept snapshot of a run, each on cfg's seeds."""
    snapshots = sorted((run_dir / "checkpoints").glob("step_*"))
    if not snapshots:
        raise ScorePolicyError(
            f"{run_dir}/checkpoints: no snapshots to choose from; train with --train.keep-snapshots > 0"
        )
    task = task or run_task_name(run_dir)
    quiet = dataclasses.replace(cfg, progress=False)
    rows = []
    for snap in snapshots:
        result = evaluate_run(snap, quiet, task=task, nfe=nfe, sample_sigma_max=sample_sigma_max)
        rows.append({"snapshot": snap.name, **{k: result[k] for k in SELECTION_KEYS if k in result}})
    return rows


def select_snapshot(
    run_dir: Path, cfg: EvalConfig, *, nfe: int | None = None, metric: str | None = None
) -> dict[str, Any]:
    """Evaluate every kept snapshot of a run on cfg's seeds and install the best as run_dir/best.

    Use validation seeds here, never the seeds results are reported on. `metric` defaults to the task's
    mean score where it has one (Push-T), else the success rate; ties go to the earlier snapshot.
    The table is written to run_dir/selection.json; run_dir/best evaluates and loads like a run.
    """
    task = run_task_name(run_dir)
    rows = evaluate_snapshots(run_dir, cfg, task=task, nfe=nfe)
    metric = metric or ("mean_score" if "mean_score" in rows[0] else "success_rate")
    if metric not in rows[0]:
        raise ScorePolicyError(f"--metric {metric}: the {task} task does not report it; use success_rate")
    best = max(rows, key=lambda r: float(r[metric]))
    install_snapshot(run_dir / "checkpoints" / best["snapshot"], run_dir / "best")
    first = cfg.seed if cfg.seed is not None else get_task(task).default_seed
    summary = {
        "run": str(run_dir),
        "metric": metric,
        "nfe": nfe,
        "first_seed": first,
        "episodes": cfg.episodes,
        "best": best["snapshot"],
        "snapshots": rows,
    }
    atomic_write_json(run_dir / "selection.json", summary)
    return summary
