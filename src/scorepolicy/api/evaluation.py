"""Evaluating a run in its simulator, timing its action chunks, and plotting obstacle-task rollouts."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scorepolicy.api.runs import load_policy, run_task_name
from scorepolicy.core.task import Condition
from scorepolicy.envs.registry import get_task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig, evaluate
from scorepolicy.policies import ChunkPolicy
from scorepolicy.policies.baselines import denoiser_calls
from scorepolicy.provenance import provenance


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
) -> dict[str, Any]:
    """Evaluate a run's policy on its task; the result records the sampling settings and the run.

    `condition` (a name or a Condition, see `scorepolicy.envs.conditions`) perturbs the task's envs; the
    result's `condition` records it with its scale (nominal when None).

    Multi-task suites run cfg.episodes episodes per task (seed s → task s mod n_tasks). With
    cfg.backend='ray' every worker loads the run itself. `latency` adds the batch-1 ms per chunk.
    """
    factory = functools.partial(load_policy, run_dir, nfe, sampler, sample_sigma_max, guidance)
    policy = factory()
    the_task = get_task(task or run_task_name(run_dir), condition)
    d = policy.cfg.diffusion
    extra: dict[str, Any] = {
        "policy": policy.cfg.kind,
        "nfe": denoiser_calls(policy),
        "sampler": sampler_name(policy),
        "schedule": d.schedule,
        "sample_sigma_max": d.sample_sigma_max,
    }
    if policy.cfg.goal.enabled:
        extra["guidance"] = policy.cfg.goal.guidance
    extra["run"] = str(run_dir)
    fingerprint = {**cfg.fingerprint, **extra}
    if latency:
        extra["latency_ms"] = measure_latency(policy, repeats=100)["ms_per_chunk"]
    extra["provenance"] = provenance(the_task.name)
    cfg = dataclasses.replace(cfg, episodes=cfg.episodes * the_task.n_subtasks, fingerprint=fingerprint)
    return evaluate(policy, the_task, cfg, extra=extra, policy_factory=factory)


def sampler_name(policy: ChunkPolicy) -> str | None:
    """The sampler a policy's chunks come from: the score sampler, DDPM's ('ddpm'/'ddim'), None for MSE-BC."""
    return {"ddpm": policy.cfg.ddpm.sampler, "mse-bc": None}.get(
        policy.cfg.kind, policy.cfg.diffusion.sampler
    )


def measure_latency(
    policy: ChunkPolicy, *, batch: int = 1, threads: int = 1, repeats: int = 200
) -> dict[str, Any]:
    """Median and p90 wall-clock milliseconds per action chunk (predict_action_chunk) at a batch size."""
    with torch_threads(threads):
        obs = torch.zeros(batch, policy.cfg.n_obs_steps, policy.cfg.obs_dim)
        obs[..., : policy.obs_min.shape[0]] += (policy.obs_min + policy.obs_max) / 2  # goal entries: task 0
        for _ in range(max(10, repeats // 10)):
            policy.predict_action_chunk(obs)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            policy.predict_action_chunk(obs)
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "ms_per_chunk": statistics.median(times),
        "ms_p90": times[int(0.9 * (len(times) - 1))],
        "threads": threads,
        "batch": batch,
        "nfe": denoiser_calls(policy),
        "sampler": sampler_name(policy),
        "denoiser": policy.cfg.denoiser,
        "repeats": repeats,
    }


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
