"""Step a wave's envs in worker processes (shards), while the policy stays batched in this one.

Physics dominates Push-T evaluation (~0.2-0.7 ms per env step here), so spreading the envs of a wave over
`n` processes (one per core) divides it by up to n. Each worker holds a contiguous shard of the wave's
envs and steps only the active ones, one by one, with the serial stepper's rules (each env's exception
is that episode's error), so the records are identical to in-process stepping.

Workers are started once per rollout, never by a bare fork of this process (whose torch thread pools may
exist): with the `forkserver` method where there is one (a clean server process, started once, that has
imported this module and runs no torch op, forks them cheaply), else with `spawn`. The task reaches them
cloudpickled (tasks hold functions, which plain pickle refuses when they are closures); between waves a
worker closes its envs and waits for the next.

A hung or crashed env cannot stop the evaluation. Before every env operation (creation, reset, step) a
worker ticks a shared counter; while this process waits for a shard, a counter that does not move for
`step_timeout` seconds means the env is hung, and a worker that exits means it crashed. The worker is
killed; the episode whose env it was running is recorded with an `EnvTimeout` (or `EnvWorkerDied`)
error; a new worker takes the shard over, rebuilding its other envs, resetting them with their seeds
and replaying the actions they have had (envs are deterministic given their seed and actions), and the
wave goes on.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing as mp
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np

from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.observations import Observation
from scorepolicy.evaluation.rollout import EpisodeError, EpisodeRules, SerialStepper, StepResult

log = logging.getLogger(__name__)

_POLL = 0.05
"""Seconds between checks of a waiting worker's liveness and progress."""
STARTUP_TIMEOUT = 120.0
"""Seconds a new worker may take to start (interpreter, imports, the task) on a busy machine."""


def _serve(conn: Connection, task_bytes: bytes, rules: EpisodeRules, ticks: Any, current: Any) -> None:
    """Worker loop: a serial stepper per wave, driven by (command, args) messages until 'exit'."""
    task: Task = cloudpickle.loads(task_bytes)
    conn.send("ready")

    def hook(i: int) -> None:
        current.value = i
        ticks.value += 1

    stepper: SerialStepper | None = None
    try:
        while True:
            cmd, args = conn.recv()
            current.value = -1
            if cmd == "exit":
                break
            if cmd == "open":
                stepper = SerialStepper(task, args[0], rules, hook, skip=args[1])
                reply: Any = None
            elif cmd == "close":
                if stepper is not None:
                    stepper.close()
                stepper, reply = None, None
            else:
                reply = stepper.reset(*args) if cmd == "reset" else stepper.step(*args)  # type: ignore[union-attr]
            conn.send(reply)
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        if stepper is not None:
            stepper.close()
        conn.close()


def _context() -> Any:
    """The `forkserver` start method where there is one (Unix), else `spawn`: never a bare fork."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])  # the server imports this (and torch) once, runs nothing
    return ctx


class _Stuck(Exception):
    """A worker hung or died while serving a command; `env` is the shard index it was at (-1: none)."""

    def __init__(self, message: str, env: int, startup: bool = False) -> None:
        super().__init__(message)
        self.env = env
        self.startup = startup


START_FAILED = (
    "env worker processes could not start ({}; their error is printed above). A script that evaluates "
    'with env_workers > 1 must start under `if __name__ == "__main__":` (worker processes import it), '
    "and the task must be importable there; or use env_workers=1"
)


class _Worker:
    """One spawned worker process and the shared values it reports its progress through."""

    def __init__(self, ctx: Any, task_bytes: bytes, rules: EpisodeRules) -> None:
        self.ticks = ctx.RawValue("q", 0)
        self.current = ctx.RawValue("i", -1)
        self.conn, child = ctx.Pipe()
        args = (child, task_bytes, rules, self.ticks, self.current)
        self.proc = ctx.Process(target=_serve, args=args, daemon=True, name="scorepolicy-env-worker")
        self.proc.start()
        child.close()
        self.started = False

    def send(self, cmd: str, args: tuple[Any, ...]) -> None:
        """Hand the worker a command (a dead worker is noticed by `receive`)."""
        with contextlib.suppress(OSError, BrokenPipeError):
            self.conn.send((cmd, args))

    def receive(self, what: str, timeout: float) -> Any:
        """The reply to the last command; `_Stuck` if the worker makes no progress for `timeout` s or dies."""
        if not self.started:
            try:
                ready = self._wait(max(timeout, STARTUP_TIMEOUT), "start-up", ticking=False)
            except _Stuck as stuck:
                raise _Stuck(str(stuck), -1, startup=True) from None
            if ready != "ready":
                raise _Stuck("the env worker process did not start", -1, startup=True)
            self.started = True
        return self._wait(timeout, what, ticking=True)

    def _wait(self, timeout: float, what: str, *, ticking: bool) -> Any:
        last, since = self.ticks.value, time.monotonic()
        while True:
            if self.conn.poll(_POLL):
                try:
                    return self.conn.recv()
                except (EOFError, OSError):
                    break
            if not self.proc.is_alive():
                break
            if ticking and self.ticks.value != last:
                last, since = self.ticks.value, time.monotonic()
            elif time.monotonic() - since > timeout:
                raise _Stuck(
                    f"EnvTimeout: env {what} took longer than {timeout:g} s; its worker was killed "
                    "(raise --step-timeout if this env is just slow)",
                    self.current.value if ticking else -1,
                )
        self.proc.join(timeout=1)
        raise _Stuck(
            f"EnvWorkerDied: the env worker process died during env {what} (exit code {self.proc.exitcode})",
            self.current.value if ticking else -1,
        )

    def kill(self) -> None:
        """Stop the process at once."""
        self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        """Ask the process to exit; kill it if it does not."""
        self.send("exit", ())
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self.conn.close()


class EnvWorkerPool:
    """`n_workers` spawned processes that step the envs of each wave, shard by shard (see the module doc)."""

    def __init__(self, task: Task, rules: EpisodeRules, n_workers: int, step_timeout: float) -> None:
        try:
            self.task_bytes = cloudpickle.dumps(task)
        except Exception as exc:
            raise ScorePolicyError(
                f"env_workers: task '{task.name}' cannot be sent to worker processes ({exc}); use env_workers=1"
            ) from exc
        self.ctx: Any = _context()
        self.rules, self.step_timeout = rules, step_timeout
        self.workers: list[_Worker | None] = [None] * n_workers

    def __enter__(self) -> EnvWorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def worker(self, k: int) -> _Worker:
        """Worker k, started if it is not running."""
        worker = self.workers[k]
        if worker is None:
            worker = self.workers[k] = _Worker(self.ctx, self.task_bytes, self.rules)
        return worker

    def kill(self, k: int) -> None:
        """Kill worker k (a new one starts when it is next needed)."""
        worker, self.workers[k] = self.workers[k], None
        if worker is not None:
            worker.kill()

    def open(self, videos: Sequence[Path | None]) -> ShardedStepper:
        """A stepper over one env per video slot, split over the workers."""
        return ShardedStepper(self, videos)

    def close(self) -> None:
        """Stop every worker, never raising."""
        for k, worker in enumerate(self.workers):
            if worker is not None:
                worker.stop()
            self.workers[k] = None


class _Shard:
    """What a shard's worker has been told this wave, so that a new worker can be brought to that state."""

    def __init__(self, part: slice, videos: list[Path | None]) -> None:
        self.part = part
        self.videos = videos
        self.dropped: dict[int, EpisodeError] = {}
        self.opened = False
        self.seeds: list[int] | None = None
        self.steps: list[tuple[np.ndarray, np.ndarray]] = []
        self.in_sync = True  # the worker (running, or fresh) holds exactly the state recorded here

    @property
    def dead(self) -> bool:
        """Every env of the shard was dropped: nothing left for a worker to do."""
        return len(self.dropped) == len(self.videos)

    def args(self, cmd: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The arguments to send: envs dropped so far are skipped at creation and never stepped."""
        if cmd == "open":
            return (self.videos, dict(self.dropped))
        if cmd == "step":
            active = np.array(args[1], dtype=bool)
            active[list(self.dropped)] = False
            return (args[0], active)
        return args

    def record(self, cmd: str, args: tuple[Any, ...]) -> None:
        """Remember a command the worker has carried out."""
        if cmd == "open":
            self.opened = True
        elif cmd == "reset":
            self.seeds = list(args[0])
        elif cmd == "step":
            self.steps.append((args[0], args[1]))

    def local_reply(self, cmd: str) -> Any:
        """The reply of a dead shard (no worker): every env reports its error, or is not stepped."""
        if cmd == "reset":
            return [(None, self.dropped[i]) for i in range(len(self.videos))]
        return [None] * len(self.videos) if cmd == "step" else None


class ShardedStepper:
    """The envs of one wave split over a pool's workers (the `Stepper` interface)."""

    def __init__(self, pool: EnvWorkerPool, videos: Sequence[Path | None]) -> None:
        self.pool = pool
        n = min(len(pool.workers), len(videos))
        bounds = np.linspace(0, len(videos), n + 1).round().astype(int)
        self.shards = [
            _Shard(slice(int(a), int(b)), list(videos[a:b])) for a, b in itertools.pairwise(bounds)
        ]
        self._all("open", [() for _ in self.shards])

    def _request(self, k: int, cmd: str, args: tuple[Any, ...]) -> Any:
        worker = self.pool.worker(k)
        worker.send(cmd, self.shards[k].args(cmd, args))
        return worker.receive("creation" if cmd == "open" else cmd, self.pool.step_timeout)

    def _restore(self, k: int) -> None:
        """Bring a fresh worker of shard k to the recorded state: envs built, reset, actions replayed."""
        shard = self.shards[k]
        if shard.in_sync:
            return
        if shard.opened:
            self._request(k, "open", ())
        if shard.seeds is not None:
            self._request(k, "reset", (shard.seeds,))
        for actions, active in shard.steps:
            self._request(k, "step", (actions, active))
        shard.in_sync = True

    def _fail(self, k: int, stuck: _Stuck) -> None:
        """Kill shard k's worker; the env it was at (every env of the shard, if unknown) gets the error."""
        shard = self.shards[k]
        self.pool.kill(k)
        if stuck.startup:  # no env is at fault: the evaluation cannot run this way
            self.pool.close()
            raise ScorePolicyError(START_FAILED.format(stuck))
        log.warning("env worker %d: %s", k, stuck)
        shard.in_sync = False
        error = EpisodeError(str(stuck), "")
        known = 0 <= stuck.env < len(shard.videos) and stuck.env not in shard.dropped
        for i in [stuck.env] if known else range(len(shard.videos)):
            shard.dropped.setdefault(i, error)

    def _finish(self, k: int, cmd: str, args: tuple[Any, ...], sent: bool) -> Any:
        """Shard k's reply to a command: received, or obtained by replacing a hung worker (and retrying)."""
        shard = self.shards[k]
        before = set(shard.dropped)
        reply: Any = None
        if sent:
            try:
                reply = self.pool.worker(k).receive(
                    "creation" if cmd == "open" else cmd, self.pool.step_timeout
                )
                shard.record(cmd, args)
                return reply
            except _Stuck as stuck:
                self._fail(k, stuck)
        while not shard.dead:
            try:
                self._restore(k)
                reply = self._request(k, cmd, args)
                break
            except _Stuck as stuck:
                self._fail(k, stuck)
        if shard.dead:
            self.pool.kill(k)
            reply = shard.local_reply(cmd)
        shard.record(cmd, args)
        if cmd == "step":
            for i in set(shard.dropped) - before:
                reply[i] = shard.dropped[i]
        return reply

    def _all(self, cmd: str, per_shard: list[tuple[Any, ...]]) -> list[Any]:
        """Send a command to every shard in sync, then collect the replies in order (retrying hung ones)."""
        sent = []
        for k, args in enumerate(per_shard):
            shard = self.shards[k]
            ok = shard.in_sync and not shard.dead
            if ok:
                self.pool.worker(k).send(cmd, shard.args(cmd, args))
            sent.append(ok)
        replies: list[Any] = []
        for k, args in enumerate(per_shard):
            reply = self._finish(k, cmd, args, sent[k])
            if cmd in ("reset", "step"):
                replies.extend(reply)
        return replies

    def reset(self, seeds: Sequence[int]) -> list[tuple[Observation | None, EpisodeError | None]]:
        """Reset each env with its own seed (in parallel across shards)."""
        return self._all("reset", [([int(x) for x in seeds[s.part]],) for s in self.shards])

    def step(self, actions: np.ndarray, active: np.ndarray) -> list[StepResult | EpisodeError | None]:
        """Step the active envs of every shard (in parallel across shards)."""
        return self._all(
            "step", [(actions[s.part], np.asarray(active[s.part], dtype=bool)) for s in self.shards]
        )

    def close(self) -> None:
        """Close the envs of the wave (the workers stay for the next one), never raising."""
        for k, shard in enumerate(self.shards):
            worker = self.pool.workers[k]
            if worker is None or not shard.in_sync:
                continue
            try:
                worker.send("close", ())
                worker.receive("close", self.pool.step_timeout)
            except _Stuck as stuck:
                log.warning("env worker %d: %s", k, stuck)
                self.pool.kill(k)
