"""Evaluate a policy on a task: seeded rollouts, success with a Wilson interval, task metrics, one JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scorepolicy.envs.base import Task
from scorepolicy.evaluation.multitask import per_task_summary
from scorepolicy.evaluation.rollout import BatchPolicy, VectorMode, run_rollouts
from scorepolicy.evaluation.stats import wilson_interval
from scorepolicy.files import atomic_write_json

_SUMMARY_KEYS = ("task", "n_episodes", "seeds", "success_rate", "success_ci", "n_errors", "mean_length")


@dataclass
class EvalConfig:
    """How to evaluate: which seeds, how many envs at once, step limit, videos and where to write the JSON."""

    episodes: int = 50
    """Number of evaluation episodes (seeds seed .. seed+episodes-1)."""
    seed: int | None = None
    """First evaluation seed; None uses the task's default_seed."""
    n_envs: int = 50
    """Environments run together in one wave (the policy's batch size)."""
    vector: VectorMode = "sync"
    """Vector env type: 'sync' (one process) or 'async' (one subprocess per env)."""
    max_steps: int | None = None
    """Episode step limit; None uses the task's max_steps."""
    video_dir: Path | None = None
    """Directory for episode_<seed>.mp4 videos (needed when n_videos > 0)."""
    n_videos: int = 0
    """Record videos of this many episodes, the first ones in seed order."""
    json_path: Path | None = None
    """Write the result JSON here (atomically); None writes nothing."""
    progress: bool = True
    """Show a progress bar over episodes with the running success rate."""
    keep_trajectories: bool = False
    """Keep each episode's observations in its record (for plotting)."""


def _jsonable(value: Any) -> Any:
    """Convert numpy values, paths and non-finite floats (to null) into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as JSON (numpy values and non-finite floats converted) atomically."""
    atomic_write_json(path, _jsonable(data))


def summarize(task: Task, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate records: success rate with its Wilson 95% interval, errors, mean length, task metrics."""
    n = len(records)
    if n == 0:
        raise ValueError("cannot summarize an evaluation without episodes")
    ok = [r for r in records if "error" not in r]
    successes = sum(float(r.get("success", 0.0)) for r in records)  # errored episodes count as failures
    lo, hi = wilson_interval(round(successes), n)
    result: dict[str, Any] = {
        "task": task.name,
        "n_episodes": n,
        "seeds": [records[0]["seed"], records[-1]["seed"]],
        "success_rate": successes / n,
        "success_ci": [lo, hi],
        "n_errors": n - len(ok),
        "mean_length": float(np.mean([r["length"] for r in ok])) if ok else None,
    }
    if ok:
        for key, value in task.aggregate_metrics(ok).items():
            result.setdefault(key, value)  # the summary's own keys are never overridden
    if task.n_subtasks > 1:
        result.update(per_task_summary(records))
    return result


def evaluate(
    policy: BatchPolicy, task: Task, cfg: EvalConfig, *, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run `cfg.episodes` seeded episodes and return (and, with `cfg.json_path`, write) the result dict."""
    if cfg.episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {cfg.episodes}")
    first = task.default_seed if cfg.seed is None else cfg.seed
    records = run_rollouts(
        policy,
        task,
        range(first, first + cfg.episodes),
        n_envs=cfg.n_envs,
        vector=cfg.vector,
        max_steps=cfg.max_steps,
        video_dir=cfg.video_dir,
        n_videos=cfg.n_videos,
        progress=cfg.progress,
        keep_trajectories=cfg.keep_trajectories,
    )
    result = summarize(task, records)
    for key, value in (extra or {}).items():
        if key in result or key == "episodes":
            raise ValueError(f"extra key {key!r} would overwrite a metric of the evaluation result")
        result[key] = value
    result["episodes"] = records
    result = _jsonable(result)
    if cfg.json_path is not None:
        write_json_atomic(cfg.json_path, result)
    return result


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_result(result: dict[str, Any]) -> str:
    """A short human-readable summary: success with its interval, other scalar metrics, episode count."""
    lo, hi = result["success_ci"]
    first, last = result["seeds"]
    rows = [
        ("task", str(result["task"])),
        ("episodes", f"{result['n_episodes']} (seeds {first}..{last}, {result['n_errors']} errors)"),
        ("success", f"{result['success_rate']:.3f}  [{lo:.3f}, {hi:.3f}] 95% Wilson"),
    ]
    if result.get("mean_length") is not None:
        rows.append(("mean_length", f"{result['mean_length']:.1f}"))
    for key, value in result.items():
        if key in _SUMMARY_KEYS or key == "episodes":
            continue
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            rows.append((key, _fmt(value)))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {text}" for name, text in rows)


@dataclass
class Evaluator:
    """A task with its evaluation config, callable as `run(policy) -> result dict`."""

    task: Task
    config: EvalConfig = field(default_factory=EvalConfig)
    extra: dict[str, Any] = field(default_factory=dict)
    """Constant entries added to every result (e.g. nfe, checkpoint path)."""

    def run(self, policy: BatchPolicy) -> dict[str, Any]:
        """Evaluate `policy` on the task with this config."""
        return evaluate(policy, self.task, self.config, extra=self.extra)
