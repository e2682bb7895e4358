"""Trained runs: which task a run is for, loading its policy for inference, installing a snapshot."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from scorepolicy.data.dataset_task import DATASET_TASK, no_simulator_message
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import fsync_directory, read_json
from scorepolicy.policies import ChunkPolicy, policy_class


def run_task_name(run_dir: Path) -> str:
    """The task a run was trained for (from its train_config.json)."""
    meta = read_json(Path(run_dir) / "train_config.json")
    if not isinstance(meta, dict) or "task" not in meta:
        raise ScorePolicyError(f"{run_dir}/train_config.json: field 'task' missing; pass --task explicitly")
    if meta["task"] == DATASET_TASK:
        raise ScorePolicyError(no_simulator_message(str(run_dir)))
    return str(meta["task"])


def recorded_task(run_dir: Path) -> str | None:
    """The task named in a run's train_config.json, or None when the file or field is missing."""
    path = Path(run_dir) / "train_config.json"
    meta = read_json(path) if path.is_file() else None
    return str(meta["task"]) if isinstance(meta, dict) and meta.get("task") else None


def load_policy(
    run_dir: Path,
    nfe: int | None = None,
    sampler: str | None = None,
    sample_sigma_max: float | None = None,
    guidance: float | None = None,
) -> ChunkPolicy:
    """A trained policy ready for fast inference, optionally with another NFE, sampler or guidance λ."""
    policy = ChunkPolicy.from_pretrained(run_dir)
    if nfe is not None and policy.cfg.kind == "ddpm":
        policy.cfg.ddpm.inference_steps = nfe  # DDPM's denoiser calls are its sampling steps
    elif nfe is not None:
        policy.cfg.diffusion.nfe = nfe
    if sampler is not None:
        policy.cfg.diffusion.sampler = sampler  # type: ignore[assignment]
    if sample_sigma_max is not None:
        policy.cfg.diffusion.sample_sigma_max = sample_sigma_max
    if guidance is not None:
        if not policy.cfg.goal.enabled:
            raise ScorePolicyError(
                f"{run_dir}: --guidance needs a goal-conditioned policy; this one has no goal"
            )
        policy.cfg.goal.guidance = guidance
    policy_class(policy.cfg.kind).check_config(policy.cfg, "inference options")
    return policy.optimize_for_inference()


def install_snapshot(snapshot: Path, target: Path, train_config: Path | None = None) -> None:
    """Install a snapshot (weights + config, plus the run's train_config.json) as `target` without a moment
    where `target` is missing: the copy goes to a fresh hidden directory beside it and `target`, a relative
    symlink, is swapped to it with one atomic rename. The previous version is kept until the next install
    (a reader that resolved the old link can finish); older ones are removed."""
    train_config = train_config or snapshot.parent.parent / "train_config.json"
    version = target.with_name(f".{target.name}-{snapshot.name}-{uuid.uuid4().hex[:8]}")
    staging = version.with_name(version.name + ".tmp")
    try:
        shutil.copytree(snapshot, staging)
        shutil.copy2(train_config, staging / "train_config.json")
        staging.rename(version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    previous = target.resolve() if target.is_symlink() else None
    if target.exists() and not target.is_symlink():  # a directory installed by an older select
        legacy = target.with_name(f".{target.name}-legacy-{uuid.uuid4().hex[:8]}")
        target.rename(legacy)
    link = target.with_name(f".{target.name}.link-{uuid.uuid4().hex[:8]}")
    os.symlink(version.name, link, target_is_directory=True)
    os.replace(link, target)
    fsync_directory(target.parent)
    for old in target.parent.glob(f".{target.name}-*"):
        if old.resolve() not in (version.resolve(), previous) and not old.name.endswith(".tmp"):
            shutil.rmtree(old, ignore_errors=True)
