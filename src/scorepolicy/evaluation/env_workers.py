"""Step a wave's envs in a few worker processes (shards), while the policy stays batched in this one.

Physics dominates Push-T evaluation (~0.2-0.7 ms per env step here), so spreading the envs of a wave over
`n` processes (one per core) divides it by up to n. Each worker holds a contiguous shard of the wave's
envs and steps only the active ones, one by one, catching each env's exceptions as that episode's
error (the serial stepper's rules), so the records are identical to in-process stepping. Workers are
forked per wave (Linux; elsewhere `spawn` needs a picklable task).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from scorepolicy.core.task import Task
from scorepolicy.evaluation.rollout import EnvFailure, EpisodeError, RolloutOptions, SerialStepper, StepResult


def _serve(conn: Connection, task: Task, videos: Sequence[Path | None], opts: RolloutOptions) -> None:
    """Worker loop: a serial stepper over this shard, driven by ('reset'|'step'|'close', ...) messages."""
    stepper = SerialStepper(task, videos, opts)
    try:
        while True:
            cmd, args = conn.recv()
            if cmd == "close":
                break
            conn.send(stepper.reset(*args) if cmd == "reset" else stepper.step(*args))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        stepper.close()
        conn.close()


class ShardedStepper:
    """The envs of one wave split over `n_workers` forked processes (same interface as the steppers)."""

    def __init__(
        self, task: Task, videos: Sequence[Path | None], opts: RolloutOptions, n_workers: int
    ) -> None:
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        ctx: Any = mp.get_context(method)
        bounds = np.linspace(0, len(videos), min(n_workers, len(videos)) + 1).round().astype(int)
        self.slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for part in self.slices:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, task, list(videos[part]), opts), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def _call(self, cmd: str, per_shard: list[tuple[Any, ...]]) -> list[Any]:
        try:
            for conn, args in zip(self.conns, per_shard):
                conn.send((cmd, args))
            return [item for conn in self.conns for item in conn.recv()]
        except (EOFError, OSError, BrokenPipeError) as exc:  # a worker died (e.g. a crash in C code)
            raise EnvFailure(f"an env worker process died: {exc!r}") from exc

    def reset(self, seeds: Sequence[int]) -> list[tuple[np.ndarray | None, EpisodeError | None]]:
        """Reset each env with its own seed."""
        return self._call("reset", [(list(seeds[part]),) for part in self.slices])

    def step(self, actions: np.ndarray, active: np.ndarray) -> list[StepResult | EpisodeError | None]:
        """Step the active envs of every shard (in parallel across shards)."""
        return self._call("step", [(actions[part], active[part]) for part in self.slices])

    def close(self) -> None:
        """Stop the workers, never raising."""
        for conn in self.conns:
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(("close", ()))
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        for conn in self.conns:
            conn.close()
