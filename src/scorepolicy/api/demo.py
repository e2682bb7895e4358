"""The bundled demo: expert demonstrations of the obstacle task, training, evaluation, routes, a plot."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from scorepolicy.api.evaluation import evaluate_run, plot_rollouts
from scorepolicy.api.training import DataConfig, TrainJob, run_training
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig
from scorepolicy.files import atomic_write_json


def run_demo(out: Path, *, n_demos: int, steps: int, episodes: int, nfe: int, seed: int) -> dict[str, Any]:
    """The bundled demo: expert demos → train → evaluate → distinct routes and a rollout plot."""
    if out.exists() and any(out.iterdir()) and not (out / "demo.json").exists():
        raise ScorePolicyError(f"{out}: exists and is not a demo run; choose another --out")
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    job = TrainJob(task="obstacles", out=out, dataset=DataConfig(n_demos=n_demos, demo_seed=seed))
    job.train.steps, job.train.seed, job.train.checkpoint_every = steps, seed, steps
    job.train.warmup_steps = min(job.train.warmup_steps, steps // 10)
    job.policy.diffusion.nfe = nfe
    run_training(job)
    t1 = time.perf_counter()
    cfg = EvalConfig(episodes=episodes, keep_trajectories=True, json_path=out / "eval.json")
    result = evaluate_run(out, cfg)
    plot_rollouts(result, out / "rollouts.png")
    summary = {
        "success_rate": result["success_rate"],
        "success_ci": result["success_ci"],
        "distinct_routes": result.get("n_routes"),
        "route_entropy": result.get("route_entropy"),
        "episodes": episodes,
        "nfe": nfe,
        "train_minutes": round((t1 - t0) / 60, 2),
        "eval_seconds": round(time.perf_counter() - t1, 1),
        "plot": str(out / "rollouts.png"),
    }
    atomic_write_json(out / "demo.json", summary)
    return summary
