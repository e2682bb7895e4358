"""Evaluating a run in its simulator, timing its action chunks, and plotting obstacle-task rollouts."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scorepolicy.api.runs import load_inference_policy, load_policy, recorded_subtask, run_task_name
from scorepolicy.core.task import Condition
from scorepolicy.devices import device_of, synchronize
from scorepolicy.envs.registry import get_task
from scorepolicy.envs.subtasks import restrict_subtask
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig, evaluate
from scorepolicy.evaluation.evaluate import write_json_atomic
from scorepolicy.evaluation.rollout import BatchPolicy
from scorepolicy.export.runtime import OnnxPolicy
from scorepolicy.policies import ChunkPolicy
from scorepolicy.policies.baselines import denoiser_calls
from scorepolicy.policies.images import example_input
from scorepolicy.provenance import package_version, provenance


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with `threads` torch threads (one keeps its speed beside other busy processes)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def evaluate_run(
    run_dir: Path,
    cfg: EvalConfig,
    *,
    task: str | None = None,
    nfe: int | None = None,
    sampler: str | None = None,
    sample_sigma_max: float | None = None,
    guidance: float | None = None,
    latency: bool = False,
    condition: Condition | str | None = None,
    monitor: Path | None = None,
    device: str = "cpu",
    subtask: str | None = None,
) -> dict[str, Any]:
    """Evaluate a run's policy on its task; the result records the sampling settings and the run.

    `condition` (a name or a Condition, see `scorepolicy.envs.conditions`) perturbs the task's envs; the
    result's `condition` records it with its scale (nominal when None).

    Multi-task suites run cfg.episodes episodes per task (seed s → task s mod n_tasks); `subtask` (default:
    the one an improved run was trained on) runs cfg.episodes of that task only (`envs.subtasks`). With
    cfg.backend='ray' every worker loads the run itself. `latency` adds the batch-1 ms per chunk.
    With `monitor` (a calibrated guard directory) the policy runs guarded: each episode records `alarm`
    and `first_alarm_step`, and the result gains the alarm rates on successes and on failures.
    The policy runs on `device` (auto: CUDA when available); envs step on the CPU.
    """
    factory = functools.partial(
        load_inference_policy, run_dir, nfe, sampler, sample_sigma_max, guidance, device
    )
    policy = factory()
    rollout: BatchPolicy = policy
    rollout_factory: Callable[[], BatchPolicy] = factory
    guard: dict[str, Any] = {}
    if monitor is not None:
        if isinstance(policy, OnnxPolicy):
            raise ScorePolicyError(
                f"--monitor: the guard reads the torch policy's embedding; evaluate the run, not {run_dir}"
            )
        rollout, guard = _guard(policy, monitor)
        torch_factory = functools.partial(
            load_policy, run_dir, nfe, sampler, sample_sigma_max, guidance, device
        )
        rollout_factory = functools.partial(_guarded_policy, torch_factory, monitor)
    subtask = subtask or recorded_subtask(run_dir)
    the_task = restrict_subtask(get_task(task or run_task_name(run_dir), condition), subtask)
    d = policy.cfg.diffusion
    extra: dict[str, Any] = {
        "policy": policy.cfg.kind,
        "nfe": chunk_denoiser_calls(policy),
        "sampler": sampler_name(policy),
        "schedule": d.schedule,
        "sample_sigma_max": d.sample_sigma_max,
    }
    if policy.cfg.goal.enabled:
        extra["guidance"] = policy.cfg.goal.guidance
    if subtask is not None:
        extra["subtask"] = the_task.name.rsplit(":", 1)[-1]
    extra["run"] = str(run_dir)
    extra.update(guard)
    fingerprint = {**cfg.fingerprint, **extra}
    extra["path"] = inference_path(policy)
    extra["device"] = str(device_of(policy))  # not in the fingerprint: a resumed evaluation may move
    if latency:
        extra["latency_ms"] = measure_latency(policy, repeats=100)["ms_per_chunk"]
    extra["provenance"] = provenance(the_task.name)
    cfg = dataclasses.replace(cfg, episodes=cfg.episodes * the_task.n_subtasks, fingerprint=fingerprint)
    result = evaluate(rollout, the_task, cfg, extra=extra, policy_factory=rollout_factory)
    if monitor is not None:
        from scorepolicy.guard.summary import alarm_rates

        result.update(alarm_rates(result["episodes"]))
        if cfg.json_path is not None:
            write_json_atomic(cfg.json_path, result)
    return result


def _guard(policy: ChunkPolicy, monitor: Path) -> tuple[BatchPolicy, dict[str, Any]]:
    """The policy guarded by the monitor in `monitor` (checked against it) and the result's guard fields."""
    from scorepolicy.guard import GuardedPolicy, Monitor

    loaded = Monitor.load(monitor)
    loaded.check_policy(policy, str(monitor))
    keys = ("delta", "window", "style", "rule", "n_samples")
    fields = {"monitor": str(monitor), "monitor_settings": {k: loaded.settings[k] for k in keys}}
    return GuardedPolicy(policy, loaded).rollout_policy(), fields


def _guarded_policy(factory: Callable[[], ChunkPolicy], monitor: Path) -> BatchPolicy:
    """A freshly loaded policy guarded by the monitor in `monitor` (for Ray workers: a picklable partial)."""
    return _guard(factory(), monitor)[0]


def chunk_denoiser_calls(policy: ChunkPolicy | OnnxPolicy) -> int:
    """Denoiser calls per action chunk (the real NFE) of a torch policy or an exported graph."""
    return policy.denoiser_calls if isinstance(policy, OnnxPolicy) else denoiser_calls(policy)


def sampler_name(policy: ChunkPolicy | OnnxPolicy) -> str | None:
    """The sampler a policy's chunks come from: the score sampler, DDPM's ('ddpm'/'ddim'), None for MSE-BC."""
    return {"ddpm": policy.cfg.ddpm.sampler, "mse-bc": None}.get(
        policy.cfg.kind, policy.cfg.diffusion.sampler
    )


def measure_latency(
    policy: ChunkPolicy | OnnxPolicy, *, batch: int = 1, threads: int = 1, repeats: int = 200
) -> dict[str, Any]:
    """Median and p90 wall-clock milliseconds per action chunk (predict_action_chunk) at a batch size,
    with the inference path that ran ('onnx', 'torch-graph', 'torch-denoiser-graph', 'torch-eager'), the
    versions, and the APIs of that path which this torch marks deprecated. Timed on the policy's device
    (observations made there; CUDA work is waited for before the clock stops)."""
    if isinstance(policy, OnnxPolicy):
        policy.set_threads(threads)
    device = device_of(policy)
    with torch_threads(threads):
        obs = torch.zeros(batch, policy.cfg.n_obs_steps, policy.cfg.obs_dim, device=device)
        obs[..., : policy.obs_min.shape[0]] += (policy.obs_min + policy.obs_max) / 2  # goal entries: task 0
        given: Any = example_input(obs, policy.cfg.image_shapes)  # image policies: with mid-grey frames
        for _ in range(max(10, repeats // 10)):
            policy.predict_action_chunk(given)
        times = []
        for _ in range(repeats):
            synchronize(device)
            t0 = time.perf_counter()
            policy.predict_action_chunk(given)
            synchronize(device)
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "ms_per_chunk": statistics.median(times),
        "ms_p90": times[int(0.9 * (len(times) - 1))],
        "threads": threads,
        "batch": batch,
        "nfe": chunk_denoiser_calls(policy),
        "sampler": sampler_name(policy),
        "denoiser": policy.cfg.denoiser,
        "repeats": repeats,
        "device": str(device),
        **inference_versions(policy),
    }


TORCHSCRIPT_PATHS = ("torch-graph", "torch-denoiser-graph")
"""Inference paths that run frozen TorchScript graphs (torch.jit.trace + freeze)."""


def inference_versions(policy: ChunkPolicy | OnnxPolicy) -> dict[str, Any]:
    """The inference path of a policy, the torch and onnxruntime versions (the latter for the ONNX path),
    and the APIs that path uses which this torch marks deprecated (found from torch's own warnings)."""
    path = inference_path(policy)
    return {
        "path": path,
        "torch_version": torch.__version__,
        "onnxruntime_version": package_version("onnxruntime") if path == "onnx" else None,
        "deprecated_apis": list(torchscript_deprecations()) if path in TORCHSCRIPT_PATHS else [],
    }


def inference_path(policy: Any) -> str:
    """How a policy computes its chunks ('onnx', 'torch-graph', 'torch-denoiser-graph', 'torch-eager'); a
    policy wrapping a frozen base (residual RL) reports its base's path."""
    if hasattr(policy, "inference_path"):
        return str(policy.inference_path())
    base = getattr(policy, "base", None)
    return inference_path(base) if base is not None else "torch-eager"


@functools.lru_cache(maxsize=1)
def torchscript_deprecations() -> tuple[str, ...]:
    """The TorchScript calls of the frozen graph path (trace, freeze, optimize_for_inference) that this torch
    marks deprecated, read from the DeprecationWarnings it emits for a tiny module."""
    module = torch.nn.Linear(2, 2).eval()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        traced = torch.jit.trace(module, (torch.zeros(1, 2),), check_trace=False)
        torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    text = " ".join(str(w.message) for w in caught if issubclass(w.category, DeprecationWarning))
    return tuple(dict.fromkeys(re.findall(r"`(torch\.jit\.\w+)` is deprecated", text)))


def plot_rollouts(result: dict[str, Any], path: Path) -> None:
    """Obstacle task: a PNG of every rollout (needs records with 'observations')."""
    if result.get("task") != "obstacles":
        raise ScorePolicyError(
            f"--plot draws the obstacle field; task '{result.get('task')}' has no such plot"
        )
    from scorepolicy.envs.obstacles_plot import plot_obstacle_rollouts

    episodes = [e for e in result["episodes"] if "observations" in e]
    trajectories = [np.asarray(e["observations"], dtype=np.float32) for e in episodes]
    title = f"{round(sum(e['success'] for e in episodes))}/{len(episodes)} successful"
    plot_obstacle_rollouts(trajectories, [bool(e["success"]) for e in episodes], path, title=title)
