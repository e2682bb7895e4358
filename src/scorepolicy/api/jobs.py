"""Where a training run's settings come from before the command line: a task's recipe, or the saved
configuration of the run being resumed (with the flags that may change on --resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scorepolicy.api.training import RECIPES, DataConfig, TrainJob, flag_name
from scorepolicy.envs.registry import TASK_NAMES
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import from_dict, read_json, to_dict
from scorepolicy.policies import PolicyConfig
from scorepolicy.training import TrainConfig
from scorepolicy.training.checkpoint import STATE_FILE

RESUME_SAFE = frozenset(
    {
        "resume",
        "train.steps",
        "train.log_every",
        "train.val_every",
        "train.checkpoint_every",
        "train.keep_snapshots",
        "train.num_threads",
        "train.tensorboard",
        "train.progress",
        "train.device",
        "train.ranks",
    }
)
"""Settings a resumed run may change: the length of the run (to extend it on purpose), logging, checkpoint
cadence, progress, threads, the device and the number of data-parallel ranks (the global batch stays, so
the continuation matches up to the order of floating-point sums). Anything else (policy shape, data, seeds, batch size, optimiser) would break
the bit-exact continuation and is refused."""


def recipe_job(task: str | None) -> TrainJob:
    """A TrainJob with the task's recipe applied (the generic defaults for no or an unknown task)."""
    job = TrainJob(task=task if task in TASK_NAMES else None)  # type: ignore[arg-type]
    for path, value in RECIPES.get(task or "", {}).items():
        *sections, name = path.split(".")
        target: Any = job
        for section in sections:
            target = getattr(target, section)
        setattr(target, name, value)
    return job


def saved_job(out: Path) -> TrainJob:
    """The TrainJob a run in `out` was trained with (train_config.json; the policy from config.json for runs
    written before train_config.json held it), with resume set."""
    if not (out / STATE_FILE).is_file() or not (out / "train_config.json").is_file():
        raise ScorePolicyError(f"{out}: no run to resume (no {STATE_FILE}); train without --resume first")
    meta = read_json(out / "train_config.json")
    where = f"{out / 'train_config.json'}"
    if not isinstance(meta, dict) or "train" not in meta:
        raise ScorePolicyError(f"{where}: field 'train' missing; not a training run's configuration")
    policy = meta.get("policy")
    if policy is None:
        policy = read_json(out / "config.json").get("policy")
    task = meta.get("task")
    data = meta.get("data")
    return TrainJob(
        task=task if task in TASK_NAMES else None,
        data=Path(data) if data else None,
        out=out,
        resume=True,
        dataset=from_dict(DataConfig, meta.get("dataset", {}), f"{where}: dataset"),
        policy=from_dict(PolicyConfig, policy, f"{where}: policy"),
        train=from_dict(TrainConfig, meta["train"], f"{where}: train"),
    )


def check_resume_flags(job: TrainJob, saved: TrainJob) -> None:
    """A one-line error naming the first flag that changes a setting a resumed run must keep."""
    given, kept = _flatten(to_dict(job)), _flatten(to_dict(saved))
    for path in given:
        if path not in RESUME_SAFE and given[path] != kept.get(path):
            raise ScorePolicyError(
                f"{flag_name(path)}: a resumed run keeps the value it was trained with ({kept.get(path)!r}, in "
                f"{saved.out / 'train_config.json'}); changing it would break the exact continuation. Drop the "
                "flag, or start a new run with another --out"
            )


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as {dotted.path: value}; paths and tuples compared as strings and lists."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = list(value) if isinstance(value, tuple) else value
            if isinstance(value, Path):
                flat[prefix + key] = str(value)
    return flat


__all__ = ["RESUME_SAFE", "check_resume_flags", "recipe_job", "saved_job"]
