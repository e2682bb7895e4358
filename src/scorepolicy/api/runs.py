"""Trained runs: which task a run is for, loading its policy for inference, installing a snapshot."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import torch

from scorepolicy.data.dataset_task import DATASET_TASK, no_simulator_message
from scorepolicy.devices import resolve_device
from scorepolicy.errors import ScorePolicyError
from scorepolicy.export.graph import read_metadata
from scorepolicy.export.runtime import OnnxPolicy, is_onnx_path
from scorepolicy.files import fsync_directory, read_json
from scorepolicy.policies import ChunkPolicy, policy_class


def run_task_name(run_dir: Path) -> str:
    """The task a run was trained for (from its train_config.json, or an exported graph's metadata)."""
    if is_onnx_path(run_dir):
        task = read_metadata(run_dir).get("task")
        if not task:
            raise ScorePolicyError(f"{run_dir}: its metadata names no task; pass --task explicitly")
        return str(task)
    meta = read_json(Path(run_dir) / "train_config.json")
    if not isinstance(meta, dict) or "task" not in meta:
        raise ScorePolicyError(f"{run_dir}/train_config.json: field 'task' missing; pass --task explicitly")
    if meta["task"] == DATASET_TASK:
        raise ScorePolicyError(no_simulator_message(str(run_dir)))
    return str(meta["task"])


def recorded_task(run_dir: Path) -> str | None:
    """The task named in a run's train_config.json (an exported graph's metadata), or None when the file
    or field is missing."""
    if is_onnx_path(run_dir):
        task = read_metadata(run_dir).get("task") if Path(run_dir).is_file() else None
        return str(task) if task else None
    path = Path(run_dir) / "train_config.json"
    meta = read_json(path) if path.is_file() else None
    return str(meta["task"]) if isinstance(meta, dict) and meta.get("task") else None


def recorded_subtask(run_dir: Path) -> str | None:
    """The subtask an improved run was trained on (its config.json 'subtask', written by `improve
    --subtask`), or None (a base run, an exported graph, or an improvement on the whole suite)."""
    path = Path(run_dir) / "config.json"
    if is_onnx_path(run_dir) or not path.is_file():
        return None
    meta = read_json(path)
    subtask = meta.get("subtask") if isinstance(meta, dict) else None
    return str(subtask) if subtask else None


def load_policy(
    run_dir: Path,
    nfe: int | None = None,
    sampler: str | None = None,
    sample_sigma_max: float | None = None,
    guidance: float | None = None,
    device: str = "cpu",
) -> ChunkPolicy:
    """A trained policy ready for fast inference, optionally with another NFE, sampler or guidance λ, on
    `device` (auto: CUDA when available; the weights are read on the CPU, then moved)."""
    policy = ChunkPolicy.from_pretrained(run_dir, device)
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


def load_inference_policy(
    path: Path,
    nfe: int | None = None,
    sampler: str | None = None,
    sample_sigma_max: float | None = None,
    guidance: float | None = None,
    device: str = "cpu",
) -> ChunkPolicy | OnnxPolicy:
    """`load_policy` for a run directory (on `device`); for an exported graph (.onnx) an `OnnxPolicy` with as
    many onnxruntime threads as torch has now (overrides must match what the graph was exported with)."""
    if not is_onnx_path(path):
        return load_policy(path, nfe, sampler, sample_sigma_max, guidance, device)
    if resolve_device(device).type != "cpu":
        raise ScorePolicyError(
            f"--device {device}: {path} runs on onnxruntime's CPU provider; use --device cpu"
        )
    policy = OnnxPolicy(path, threads=torch.get_num_threads())
    d, g = policy.cfg.diffusion, policy.cfg.goal
    for flag, asked, exported in (
        ("--nfe", nfe, d.nfe),
        ("--sampler", sampler, d.sampler),
        ("--sample-sigma-max", sample_sigma_max, d.sample_sigma_max),
        ("--guidance", guidance, g.guidance if g.enabled else None),
    ):
        if asked is not None and asked != exported:
            raise ScorePolicyError(
                f"{flag} {asked}: {path} was exported with {exported}; export the run again with that setting"
            )
    return policy


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
