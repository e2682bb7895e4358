"""Trained runs: which task a run is for, loading its policy for inference, installing a snapshot."""

from __future__ import annotations

import shutil
from pathlib import Path

from scorepolicy.data.dataset_task import DATASET_TASK, no_simulator_message
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import read_json
from scorepolicy.policies import ChunkPolicy, policy_class


def run_task_name(run_dir: Path) -> str:
    """The task a run was trained for (from its train_config.json)."""
    meta = read_json(Path(run_dir) / "train_config.json")
    if not isinstance(meta, dict) or "task" not in meta:
        raise ScorePolicyError(f"{run_dir}/train_config.json: field 'task' missing; pass --task explicitly")
    if meta["task"] == DATASET_TASK:
        raise ScorePolicyError(no_simulator_message(str(run_dir)))
    return str(meta["task"])


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


def install_snapshot(snapshot: Path, target: Path) -> None:
    """Copy a snapshot (weights + config, plus the run's train_config.json) to `target`, replacing it whole."""
    staging = target.with_name(f".{target.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(snapshot, staging)
    shutil.copy2(snapshot.parent.parent / "train_config.json", staging / "train_config.json")
    retired = target.with_name(f".{target.name}.old")
    if target.exists():
        shutil.rmtree(retired, ignore_errors=True)
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
