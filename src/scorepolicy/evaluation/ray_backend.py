"""Rollouts as Ray tasks: one actor per worker builds the policy once and runs waves handed to it.

Waves are the same as the local backend's (`plan_waves`) and every episode draws its sampling noise from
its own seed, so the records are identical to a local run with the same seeds, whatever worker ran which
wave. A local Ray is started on demand (and stopped afterwards), or an existing cluster is joined
by address. Ray is installed with the `ray` (or `dev`) extra: `pip install 'scorepolicy[ray]'`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.rollout import BatchPolicy, EpisodeRules, Progress, RolloutOptions, run_wave
from scorepolicy.evaluation.waves import Wave, WaveDone, env_worker_pool, plan_waves, resolve_options

PolicyFactory = Callable[[], BatchPolicy]
"""Builds the policy inside a worker (must be picklable, e.g. functools.partial of a loader)."""


def import_ray() -> Any:
    """The ray module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ScorePolicyError(
            "--backend ray needs Ray; install it with: pip install 'scorepolicy[ray]' (or pip install ray)"
        ) from exc
    return ray


class _WaveWorker:
    """Body of the Ray actor: the policy, the task and the rollout options of one evaluation."""

    def __init__(self, factory: PolicyFactory, task: Task, opts: RolloutOptions, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.policy = factory()
        self.task, self.opts = task, opts
        self.rules = EpisodeRules.of(task, opts)
        self._pool = env_worker_pool(task, self.rules, opts)
        self.pool = self._pool.__enter__()  # env worker processes live as long as the actor

    def run(self, seeds: tuple[int, ...], videos: tuple[Path | None, ...]) -> list[dict[str, Any]]:
        """Run one wave and return its records."""
        return run_wave(self.policy, self.task, seeds, videos, self.rules, Progress(0, False), self.pool)

    def close(self) -> None:
        """Stop the env worker processes."""
        self._pool.__exit__(None, None, None)


def _start_ray(ray: Any, workers: int, address: str | None) -> bool:
    """Connect to Ray (a new local instance unless an address is given); True if this call started it."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is None:
        kwargs["num_cpus"] = workers
    try:
        ray.init(address=address, **kwargs)
    except Exception as exc:  # e.g. no cluster at the address
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise ScorePolicyError(f"could not start or join {where}: {exc}") from exc
    return True


def run_rollouts_ray(
    factory: PolicyFactory,
    task: Task,
    seeds: Sequence[int],
    options: RolloutOptions | None = None,
    *,
    workers: int = 2,
    address: str | None = None,
    threads_per_worker: int = 1,
    done: Mapping[int, list[dict[str, Any]]] | None = None,
    on_wave: WaveDone | None = None,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """`run_rollouts` with the waves spread over `workers` Ray actors (same records, same order)."""
    if workers < 1:
        raise ScorePolicyError(f"workers must be at least 1, got {workers}")
    opts = resolve_options(options, overrides)
    EpisodeRules.of(task, opts)  # checks the options here, not in a worker
    waves = plan_waves(seeds, opts)
    results: dict[int, list[dict[str, Any]]] = dict(done or {})
    todo = [w for w in waves if w.index not in results]
    bar = Progress(sum(len(w.seeds) for w in waves), opts.progress)
    for records in results.values():
        for record in records:
            bar.finished(record)
    ray = import_ray()
    started = _start_ray(ray, workers, address) if todo else False
    try:
        if todo:
            _dispatch(ray, factory, task, opts, threads_per_worker, workers, todo, results, on_wave, bar)
    finally:
        bar.close()
        if started:
            ray.shutdown()
    return [r for w in waves for r in results[w.index]]


def _dispatch(
    ray: Any,
    factory: PolicyFactory,
    task: Task,
    opts: RolloutOptions,
    threads: int,
    workers: int,
    todo: list[Wave],
    results: dict[int, list[dict[str, Any]]],
    on_wave: WaveDone | None,
    bar: Progress,
) -> None:
    """Keep every actor busy with one wave at a time until all waves are done."""
    actor_cls = ray.remote(num_cpus=1)(_WaveWorker)
    actors = [actor_cls.remote(factory, task, opts, threads) for _ in range(min(workers, len(todo)))]
    queue = list(todo)
    pending: dict[Any, tuple[Any, Wave]] = {}

    def submit(actor: Any) -> None:
        if queue:
            wave = queue.pop(0)
            pending[actor.run.remote(wave.seeds, wave.videos)] = (actor, wave)

    try:
        for actor in actors:
            submit(actor)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            actor, wave = pending.pop(ready[0])
            try:
                records = ray.get(ready[0])
            except Exception as exc:  # a policy error or a lost worker: the evaluation cannot go on
                raise ScorePolicyError(
                    f"Ray worker failed on the wave from seed {wave.seeds[0]}: {exc}"
                ) from exc
            results[wave.index] = records
            for record in records:
                bar.finished(record)
            if on_wave is not None:
                on_wave(wave, records)
            submit(actor)
    finally:
        closing = [actor.close.remote() for actor in actors]
        ray.wait(closing, num_returns=len(closing), timeout=30)
        for actor in actors:
            ray.kill(actor)
