"""Start N data-parallel ranks on this machine with torchrun's environment contract (`--ranks N`).

Each rank is a fresh (spawned) Python process with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
MASTER_ADDR and MASTER_PORT set, exactly what `torchrun --standalone --nproc-per-node N` gives its
workers, so the ranks run the same code either way. SIGINT and SIGTERM sent to the launcher are passed
on to the ranks (which checkpoint and stop together); if a rank fails, the others are stopped.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from scorepolicy.errors import ScorePolicyError

GRACE_SECONDS = 30.0
"""How long the other ranks may take to finish (e.g. rank 0's checkpoint) after one rank stopped."""


def free_port() -> int:
    """A TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(
    fn: Callable[..., Any], args: tuple[Any, ...], rank: int, world: int, port: int, results: Any
) -> None:
    """A rank's process: torchrun's variables, then `fn(*args)`; rank 0's result and any error go back."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        GROUP_RANK="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        value = fn(*args)
    except ScorePolicyError as e:
        results.put((rank, "error", str(e)))
        raise SystemExit(2) from None
    except KeyboardInterrupt as e:  # TrainingInterrupted: rank 0 has written the checkpoint
        results.put((rank, "interrupted", str(e)))
        raise SystemExit(130) from None
    except BaseException:
        results.put((rank, "crash", traceback.format_exc()))
        raise SystemExit(1) from None
    results.put((rank, "ok", value if rank == 0 else None))


@contextlib.contextmanager
def _forward_signals(processes: list[Any]) -> Iterator[None]:
    """While active, SIGINT/SIGTERM to this process are passed on to the rank processes (in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in sigs}

    def forward(signum: int, frame: object) -> None:
        for p in processes:
            if p.is_alive() and p.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signum)

    for sig in sigs:
        signal.signal(sig, forward)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(processes: list[Any], results: Any, reports: dict[int, tuple[str, Any]]) -> None:
    """Wait for every rank, collecting their reports as they come (a large result must be read before its
    rank can exit); once one has exited with an error, give the others GRACE_SECONDS, then stop them."""
    failed_at: float | None = None
    while any(p.is_alive() for p in processes) or not results.empty():
        while not results.empty():
            rank, kind, payload = results.get()
            reports[rank] = (kind, payload)
        if failed_at is None and any(p.exitcode not in (None, 0) for p in processes):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > GRACE_SECONDS:
            for p in processes:
                if p.is_alive():
                    p.terminate()
        for p in processes:
            p.join(timeout=0.05)


def launch_ranks(fn: Callable[..., Any], args: tuple[Any, ...], world: int) -> Any:
    """Run `fn(*args)` in `world` spawned rank processes on this machine; rank 0's return value.

    A ScorePolicyError in a rank is raised here with its message; an interruption (Ctrl-C, SIGTERM) raises
    KeyboardInterrupt with rank 0's message; any other failure a RuntimeError naming the rank.
    """
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    port = free_port()
    processes = [
        ctx.Process(target=_rank_main, args=(fn, args, rank, world, port, results), daemon=False)
        for rank in range(world)
    ]
    reports: dict[int, tuple[str, Any]] = {}
    with _forward_signals(processes):
        for p in processes:
            p.start()
        _wait(processes, results, reports)
    return _outcome(reports, [p.exitcode for p in processes])


def _outcome(reports: dict[int, tuple[str, Any]], codes: list[int | None]) -> Any:
    """Rank 0's value, or the most telling failure among the ranks."""
    for kind in ("error", "crash", "interrupted"):
        for rank in sorted(reports):
            if reports[rank][0] != kind:
                continue
            message = reports[rank][1]
            if kind == "error":
                raise ScorePolicyError(message)
            if kind == "interrupted":
                raise KeyboardInterrupt(reports.get(0, reports[rank])[1])
            raise RuntimeError(f"rank {rank} of {len(codes)} failed:\n{message}")
    if reports.get(0, ("", None))[0] != "ok" or any(code != 0 for code in codes):
        raise RuntimeError(f"data-parallel ranks ended with exit codes {codes} (a rank was killed?)")
    return reports[0][1]


__all__ = ["GRACE_SECONDS", "free_port", "launch_ranks"]
