"""Waves of episodes and the local backend: split seeds into waves, run them (skipping finished ones)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.rollout import (
    BatchPolicy,
    Progress,
    RolloutOptions,
    VectorMode,
    check_rollout_args,
    run_wave,
)


@dataclass(frozen=True)
class Wave:
    """Episodes that start and step together: the unit of work of every backend and of resuming."""

    index: int
    """Position of the wave in the evaluation (0, 1, ...)."""
    seeds: tuple[int, ...]
    """Env seed of each episode; the first one also seeds the policy's sampling noise."""
    videos: tuple[Path | None, ...]
    """Video path of each episode (None: no video)."""


WaveDone = Callable[[Wave, list[dict[str, Any]]], None]
"""Called with each finished wave and its records (e.g. to append them to a resume journal)."""


def plan_waves(
    seeds: Sequence[int], n_envs: int, video_dir: Path | None = None, n_videos: int = 0
) -> list[Wave]:
    """Split the seeds into waves of up to `n_envs` episodes (videos for the first `n_videos`)."""
    seed_list = [int(s) for s in seeds]
    videos = [
        video_dir / f"episode_{s}.mp4" if video_dir is not None and i < n_videos else None
        for i, s in enumerate(seed_list)
    ]
    return [
        Wave(k, tuple(seed_list[i : i + n_envs]), tuple(videos[i : i + n_envs]))
        for k, i in enumerate(range(0, len(seed_list), n_envs))
    ]


def rollout_options(
    task: Task,
    *,
    n_envs: int,
    vector: str,
    max_steps: int | None,
    video_dir: Path | None,
    n_videos: int,
    keep_trajectories: bool,
    env_workers: int = 1,
) -> RolloutOptions:
    """Checked options for rolling out on `task` (one-line errors for invalid arguments)."""
    steps = task.max_steps if max_steps is None else int(max_steps)
    check_rollout_args(n_envs, vector, steps, video_dir, n_videos)
    if env_workers < 1:
        raise ScorePolicyError(f"env_workers must be at least 1, got {env_workers}")
    return RolloutOptions(steps, task.stop_on_success, keep_trajectories, env_workers)


def run_rollouts(
    policy: BatchPolicy,
    task: Task,
    seeds: Sequence[int],
    *,
    n_envs: int = 50,
    vector: VectorMode = "sync",
    max_steps: int | None = None,
    video_dir: Path | None = None,
    n_videos: int = 0,
    progress: bool = True,
    keep_trajectories: bool = False,
    env_workers: int = 1,
    done: Mapping[int, list[dict[str, Any]]] | None = None,
    on_wave: WaveDone | None = None,
) -> list[dict[str, Any]]:
    """Roll the policy out once per seed, in waves of `n_envs` envs; one record per episode, in seed order.

    A record is `{"seed", "length", "return", **task.episode_metrics(step_infos)}`, plus `"observations"`
    (with `keep_trajectories`) and `"video"` (for the first `n_videos` episodes); an episode whose env
    raised is `{"seed", "error", "traceback", "success": 0.0}`. With `env_workers` > 1 the envs of a
    wave are stepped in that many processes (same records). Waves whose index is in `done` are not
    run again: their records are taken from it (resuming). `on_wave` sees every newly finished wave.
    """
    opts = rollout_options(
        task,
        n_envs=n_envs,
        vector=vector,
        max_steps=max_steps,
        video_dir=video_dir,
        n_videos=n_videos,
        keep_trajectories=keep_trajectories,
        env_workers=env_workers,
    )
    waves = plan_waves(seeds, n_envs, video_dir, n_videos)
    done = done or {}
    bar = Progress(sum(len(w.seeds) for w in waves), progress)
    records: list[dict[str, Any]] = []
    try:
        for wave in waves:
            if wave.index in done:
                for record in done[wave.index]:
                    bar.finished(record)
                records.extend(done[wave.index])
                continue
            got = run_wave(policy, task, wave.seeds, wave.videos, opts, vector, bar)
            if on_wave is not None:
                on_wave(wave, got)
            records.extend(got)
    finally:
        bar.close()
    return records
