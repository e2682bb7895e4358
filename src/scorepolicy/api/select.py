"""Choosing among a run's kept snapshots by rollouts on validation seeds, and installing the best."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

from scorepolicy.api.evaluation import evaluate_run
from scorepolicy.api.runs import install_snapshot, run_task_name
from scorepolicy.envs.registry import get_task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig
from scorepolicy.files import atomic_write_json
from scorepolicy.provenance import provenance

SELECTION_KEYS = ("mean_score", "mean_max_coverage", "success_rate", "success_ci", "mean_length", "n_errors")


SKIPPED = "deleted while select ran (the training run is still rotating its snapshots)"


def stage_snapshots(run_dir: Path, staging: Path) -> tuple[list[Path], list[dict[str, Any]]]:
    """Copy every kept snapshot of a run into `staging` (so later deletions cannot cut a read short);
    snapshots deleted before they were copied whole come back as skipped rows."""
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*"))
    if not names:
        raise ScorePolicyError(
            f"{run_dir}/checkpoints: no snapshots to choose from; train with --train.keep-snapshots > 0"
        )
    copies, skipped = [], []
    for name in names:
        copy = staging / name
        try:
            shutil.copytree(run_dir / "checkpoints" / name, copy)
            complete = all((copy / f).is_file() for f in ("model.safetensors", "config.json"))
        except (FileNotFoundError, shutil.Error):
            complete = False
        if complete:
            copies.append(copy)
        else:
            shutil.rmtree(copy, ignore_errors=True)
            skipped.append({"snapshot": name, "skipped": SKIPPED})
    return copies, skipped


def evaluate_snapshots(
    run_dir: Path,
    cfg: EvalConfig,
    *,
    task: str | None = None,
    nfe: int | None = None,
    sample_sigma_max: float | None = None,
    staging: Path | None = None,
) -> list[dict[str, Any]]:
    """One row of results (SELECTION_KEYS) per kept snapshot of a run, each on cfg's seeds; a snapshot
    deleted meanwhile (a run still training) gets a row with 'skipped'. Snapshots are evaluated from
    copies in `staging` (default: a temporary directory in the run, removed afterwards)."""
    task = task or run_task_name(run_dir)
    quiet = dataclasses.replace(cfg, progress=False)
    if staging is None:
        with tempfile.TemporaryDirectory(dir=run_dir, prefix=".select-") as tmp:
            return evaluate_snapshots(
                run_dir, cfg, task=task, nfe=nfe, sample_sigma_max=sample_sigma_max, staging=Path(tmp)
            )
    copies, rows = stage_snapshots(run_dir, staging)
    for snap in copies:
        result = evaluate_run(snap, quiet, task=task, nfe=nfe, sample_sigma_max=sample_sigma_max)
        rows.append({"snapshot": snap.name, **{k: result[k] for k in SELECTION_KEYS if k in result}})
    return sorted(rows, key=lambda r: str(r["snapshot"]))


def select_snapshot(
    run_dir: Path, cfg: EvalConfig, *, nfe: int | None = None, metric: str | None = None
) -> dict[str, Any]:
    """Evaluate every kept snapshot of a run on cfg's seeds and install the best as run_dir/best.

    Use validation seeds here, never the seeds results are reported on. `metric` defaults to the task's
    mean score where it has one (Push-T), else the success rate; ties go to the earlier snapshot.
    The table is written to run_dir/selection.json; run_dir/best evaluates and loads like a run, and is
    replaced in one atomic step (a symlink swap), so it is never missing.
    """
    task = run_task_name(run_dir)
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".select-") as tmp:
        rows = evaluate_snapshots(run_dir, cfg, task=task, nfe=nfe, staging=Path(tmp))
        done = [r for r in rows if "skipped" not in r]
        if not done:
            raise ScorePolicyError(f"{run_dir}/checkpoints: every snapshot was {SKIPPED}; run select again")
        metric = metric or ("mean_score" if "mean_score" in done[0] else "success_rate")
        if metric not in done[0]:
            raise ScorePolicyError(f"--metric {metric}: the {task} task does not report it; use success_rate")
        best = max(done, key=lambda r: float(r[metric]))
        install_snapshot(Path(tmp) / best["snapshot"], run_dir / "best", run_dir / "train_config.json")
    first = cfg.seed if cfg.seed is not None else get_task(task).default_seed
    summary = {
        "run": str(run_dir),
        "metric": metric,
        "nfe": nfe,
        "first_seed": first,
        "episodes": cfg.episodes,
        "best": best["snapshot"],
        "snapshots": rows,
        "provenance": provenance(task),
    }
    atomic_write_json(run_dir / "selection.json", summary)
    return summary
