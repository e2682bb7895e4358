"""Evaluate a policy on a task: seeded rollouts, success with intervals, task and diversity metrics, one JSON.

Rollouts run locally (envs in this process or in env worker processes) or on Ray workers, with the same
per-episode records either way; with a JSON path, finished waves are journalled beside it so that
`resume=True` continues an interrupted evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.diversity import diversity_metrics
from scorepolicy.evaluation.journal import EpisodeJournal, journal_path_for
from scorepolicy.evaluation.multitask import per_task_summary
from scorepolicy.evaluation.rollout import BatchPolicy, RolloutOptions
from scorepolicy.evaluation.stats import clopper_pearson_interval, success_posterior, wilson_interval
from scorepolicy.evaluation.waves import Wave, run_rollouts
from scorepolicy.files import atomic_write_json

_SUMMARY_KEYS = (
    "task",
    "n_episodes",
    "seeds",
    "success_rate",
    "success_ci",
    "success_ci_clopper_pearson",
    "success_posterior",
    "n_errors",
    "errors",
    "mean_length",
    "condition",
)
Backend = Literal["local", "ray"]


@dataclass
class EvalConfig(RolloutOptions):
    """How to evaluate: the rollout options (n_envs, max_steps, videos, env workers, ...), which seeds,
    the backend, and where to write the JSON."""

    episodes: int = 50
    """Number of evaluation episodes (seeds seed .. seed+episodes-1)."""
    seed: int | None = None
    """First evaluation seed; None uses the task's default_seed."""
    json_path: Path | None = None
    """Write the result JSON here (atomically); None writes nothing."""
    backend: Backend = "local"
    """'local': waves run in this process; 'ray': waves run as Ray tasks (needs a policy factory)."""
    workers: int = 2
    """Ray workers (actors, one CPU each) when backend='ray'."""
    address: str | None = None
    """Address of an existing Ray cluster (None: start a local Ray on demand)."""
    resume: bool = False
    """Continue from the waves already in the journal beside json_path instead of starting over."""
    fingerprint: dict[str, Any] = field(default_factory=dict)
    """Settings that must match for a journal to be resumed (e.g. the run and its sampling settings)."""


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
    s = round(successes)
    posterior = success_posterior(s, n)
    result: dict[str, Any] = {
        "task": task.name,
        "n_episodes": n,
        "seeds": [records[0]["seed"], records[-1]["seed"]],
        "success_rate": successes / n,
        "success_ci": list(wilson_interval(s, n)),
        "success_ci_clopper_pearson": list(clopper_pearson_interval(s, n)),
        "success_posterior": {"a": posterior.a, "b": posterior.b, "ci": list(posterior.interval())},
        "n_errors": n - len(ok),
        "errors": [
            {k: r[k] for k in ("seed", "error", "traceback") if k in r} for r in records if "error" in r
        ],
        "mean_length": float(np.mean([r["length"] for r in ok])) if ok else None,
        "condition": task.condition.as_dict(),
    }
    if task.behaviour_key is not None and task.n_behaviours > 0:
        result.update(diversity_metrics(ok, task.behaviour_key, task.n_behaviours, task.behaviour_prior))
    if ok:
        for key, value in task.aggregate_metrics(ok).items():
            result.setdefault(key, value)  # the summary's own keys are never overridden
    if task.n_subtasks > 1:
        result.update(per_task_summary(records))
    return result


def _journal(task: Task, cfg: EvalConfig, first: int) -> EpisodeJournal | None:
    if cfg.json_path is None:
        if cfg.resume:
            raise ScorePolicyError("resume needs a JSON path (--json): the journal is kept beside it")
        return None
    fingerprint = {
        "task": task.name,
        "first_seed": first,
        "episodes": cfg.episodes,
        "n_envs": cfg.n_envs,
        "max_steps": cfg.max_steps,
        "keep_trajectories": cfg.keep_trajectories,
        **_jsonable(cfg.fingerprint),
    }
    if task.condition.name != "nominal":  # journals of nominal runs keep their earlier fingerprint
        fingerprint["condition"] = task.condition.as_dict()
    return EpisodeJournal(journal_path_for(cfg.json_path), fingerprint, resume=cfg.resume)


def evaluate(
    policy: BatchPolicy | None,
    task: Task,
    cfg: EvalConfig,
    *,
    extra: dict[str, Any] | None = None,
    policy_factory: Callable[[], BatchPolicy] | None = None,
) -> dict[str, Any]:
    """Run `cfg.episodes` seeded episodes and return (and, with `cfg.json_path`, write) the result dict.

    With a JSON path every finished wave is also appended to `<json stem>.episodes.jsonl`, from which
    `cfg.resume` continues an interrupted run (the journal is removed once the result JSON is written).
    The Ray backend builds the policy in every worker with `policy_factory` (picklable); the local
    backend uses `policy` (or builds it with the factory).
    """
    if cfg.episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {cfg.episodes}")
    first = task.default_seed if cfg.seed is None else cfg.seed
    journal = _journal(task, cfg, first)

    def on_wave(wave: Wave, records: list[dict[str, Any]]) -> None:
        if journal is not None:
            journal.write(wave, _jsonable(records))

    opts = cfg.rollout_options()
    done = journal.done if journal is not None else None
    seeds = range(first, first + cfg.episodes)
    if cfg.backend == "ray":
        from scorepolicy.evaluation.ray_backend import run_rollouts_ray

        if policy_factory is None:
            raise ScorePolicyError("the Ray backend builds the policy in each worker: pass policy_factory")
        records = run_rollouts_ray(
            policy_factory,
            task,
            seeds,
            opts,
            workers=cfg.workers,
            address=cfg.address,
            done=done,
            on_wave=on_wave,
        )
    else:
        if policy is None:
            if policy_factory is None:
                raise ValueError("evaluate needs a policy or a policy_factory")
            policy = policy_factory()
        records = run_rollouts(policy, task, seeds, opts, done=done, on_wave=on_wave)
    result = summarize(task, records)
    for key, value in (extra or {}).items():
        if key in result or key == "episodes":
            raise ValueError(f"extra key {key!r} would overwrite a metric of the evaluation result")
        result[key] = value
    result["episodes"] = records
    result = _jsonable(result)
    if cfg.json_path is not None:
        write_json_atomic(cfg.json_path, result)
    if journal is not None:
        journal.path.unlink(missing_ok=True)  # the result JSON now holds every episode
    return result


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _perturbed(result: dict[str, Any]) -> bool:
    condition = result.get("condition")
    return isinstance(condition, dict) and condition.get("name", "nominal") != "nominal"


def _condition_text(condition: dict[str, Any]) -> str:
    return " ".join(
        [str(condition["name"]), *(f"{k}={_fmt(v)}" for k, v in condition.items() if k != "name")]
    )


def format_result(result: dict[str, Any]) -> str:
    """A short human-readable summary: success with its interval, other scalar metrics, episode count."""
    lo, hi = result["success_ci"]
    first, last = result["seeds"]
    rows = [
        ("task", str(result["task"])),
        *([("condition", _condition_text(result["condition"]))] if _perturbed(result) else []),
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
