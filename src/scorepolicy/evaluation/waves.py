"""Waves of episodes and the local backend: split seeds into waves, run them (skipping finished ones)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scorepolicy.core.task import Task
from scorepolicy.evaluation.rollout import (
    BatchPolicy,
    EpisodeRules,
    Progress,
    RolloutOptions,
    StepperPool,
    run_wave,
)


@dataclass(frozen=True)
class Wave:
    """Episodes that start and step together: the unit of work of every backend and of resuming."""

    index: int
    """Position of the wave in the evaluation (0, 1, ...)."""
    seeds: tuple[int, ...]
    """Env seed of each episode, which also seeds its sampling noise."""
    videos: tuple[Path | None, ...]
    """Video path of each episode (None: no video)."""


WaveDone = Callable[[Wave, list[dict[str, Any]]], None]
"""Called with each finished wave and its records (e.g. to append them to a resume journal)."""


def plan_waves(seeds: Sequence[int], opts: RolloutOptions) -> list[Wave]:
    """Split the seeds into waves of up to `opts.n_envs` episodes (videos for the first `opts.n_videos`)."""
    seed_list = [int(s) for s in seeds]
    n, video_dir = opts.n_envs, opts.video_dir
    videos = [
        video_dir / f"episode_{s}.mp4" if video_dir is not None and i < opts.n_videos else None
        for i, s in enumerate(seed_list)
    ]
    return [
        Wave(k, tuple(seed_list[i : i + n]), tuple(videos[i : i + n]))
        for k, i in enumerate(range(0, len(seed_list), n))
    ]


def resolve_options(options: RolloutOptions | None, overrides: Mapping[str, Any]) -> RolloutOptions:
    """`options` (default: RolloutOptions()) as a plain RolloutOptions with some fields replaced."""
    base = (options or RolloutOptions()).rollout_options()
    return dataclasses.replace(base, **overrides) if overrides else base


@contextlib.contextmanager
def env_worker_pool(task: Task, rules: EpisodeRules, opts: RolloutOptions) -> Iterator[StepperPool | None]:
    """Env worker processes for a whole rollout when `opts.env_workers` > 1 (else None: in-process)."""
    if opts.env_workers <= 1:
        yield None
        return
    from scorepolicy.evaluation.env_workers import EnvWorkerPool

    with EnvWorkerPool(task, rules, opts.env_workers, opts.step_timeout) as pool:
        yield pool


def run_rollouts(
    policy: BatchPolicy,
    task: Task,
    seeds: Sequence[int],
    options: RolloutOptions | None = None,
    *,
    done: Mapping[int, list[dict[str, Any]]] | None = None,
    on_wave: WaveDone | None = None,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Roll the policy out once per seed, in waves of `n_envs` envs; one record per episode, in seed order.

    `options` (with any field replaced by a keyword, e.g. `n_envs=10`) says how. A record is
    `{"seed", "length", "return", **task.episode_metrics(step_infos)}`, plus `"observations"` (with
    `keep_trajectories`) and `"video"` (for the first `n_videos` episodes); an episode whose env raised
    or hung is `{"seed", "error", "traceback", "success": 0.0}`. Records do not depend on `n_envs` or
    `env_workers`. Waves whose index is in `done` are not run again: their records are taken from it
    (resuming). `on_wave` sees every newly finished wave.
    """
    opts = resolve_options(options, overrides)
    rules = EpisodeRules.of(task, opts)
    waves = plan_waves(seeds, opts)
    done = done or {}
    bar = Progress(sum(len(w.seeds) for w in waves), opts.progress)
    records: list[dict[str, Any]] = []
    try:
        with env_worker_pool(task, rules, opts) as pool:
            for wave in waves:
                if wave.index in done:
                    for record in done[wave.index]:
                        bar.finished(record)
                    records.extend(done[wave.index])
                    continue
                got = run_wave(policy, task, wave.seeds, wave.videos, rules, bar, pool)
                if on_wave is not None:
                    on_wave(wave, got)
                records.extend(got)
    finally:
        bar.close()
    return records
