"""Data-parallel training across processes (torchrun's environment contract) and the training device.

A process is one rank of a data-parallel run when torchrun (or `launch.launch_ranks`) set RANK,
WORLD_SIZE and LOCAL_RANK (with MASTER_ADDR/MASTER_PORT) in its environment; the same code runs on one
machine or several. Ranks use gloo on CPUs and NCCL on CUDA devices (one device per local rank).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from scorepolicy import devices
from scorepolicy.errors import ScorePolicyError


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run (rank 0 of 1 when training alone)."""

    rank: int = 0
    """Global rank (0 writes every file)."""
    world: int = 1
    """Number of ranks."""
    local_rank: int = 0
    """Rank on this machine (selects the CUDA device)."""

    @property
    def is_main(self) -> bool:
        """Whether this rank writes checkpoints, logs and progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether there is more than one rank."""
        return self.world > 1

    def rows(self, n_local: int) -> slice:
        """This rank's rows of a global batch of world · n_local rows."""
        return slice(self.rank * n_local, (self.rank + 1) * n_local)


def env_ranks() -> Ranks:
    """The rank of this process from torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK); 0 of 1 without."""
    values = {}
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        raw = os.environ.get(name, "")
        try:
            values[name] = int(raw) if raw.strip() else default
        except ValueError:
            raise ScorePolicyError(
                f"environment variable {name}={raw!r}: must be an integer (set by torchrun)"
            ) from None
    ranks = Ranks(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if ranks.world < 1 or not 0 <= ranks.rank < ranks.world or ranks.local_rank < 0:
        raise ScorePolicyError(
            f"environment: RANK={ranks.rank}, WORLD_SIZE={ranks.world}: need 0 ≤ RANK < WORLD_SIZE (set by torchrun)"
        )
    return ranks


def resolve_device(name: str, ranks: Ranks = Ranks()) -> torch.device:
    """The device `--device` names for this rank: auto is CUDA when torch sees one, else the CPU; with
    several ranks on CUDA each local rank takes its own device."""
    return devices.resolve_device(name, ranks.local_rank)


def local_batch_size(batch_size: int, ranks: Ranks) -> int:
    """Each rank's share of the global batch (a one-line error unless the ranks divide it)."""
    if batch_size % ranks.world:
        raise ScorePolicyError(
            f"--train.batch-size {batch_size}: the global batch is split evenly over {ranks.world} ranks; "
            f"choose a multiple of {ranks.world}"
        )
    return batch_size // ranks.world


@contextlib.contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """The default process group for the block (gloo on CPU, NCCL on CUDA), torn down afterwards; a group the
    caller initialised is used and left alone; nothing happens with one rank."""
    if not ranks.active:
        yield
        return
    if dist.is_initialized():
        if dist.get_world_size() != ranks.world:
            raise ScorePolicyError(
                f"the process group has {dist.get_world_size()} ranks but WORLD_SIZE is {ranks.world}"
            )
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method="env://", rank=ranks.rank, world_size=ranks.world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def broadcast_bytes(data: bytes | None, ranks: Ranks, device: torch.device) -> bytes | None:
    """Rank 0's `data` (None: it has none) on every rank, sent as a uint8 tensor (nothing pickled)."""
    if not ranks.active:
        return data
    size = torch.tensor([-1 if data is None else len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, 0)
    n = int(size.item())
    if n < 0:
        return None
    buffer = torch.empty(n, dtype=torch.uint8, device=device)
    if ranks.is_main and data is not None:
        buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buffer, 0)
    return data if ranks.is_main else buffer.cpu().numpy().tobytes()


def step_consensus(loss: torch.Tensor, stop: bool, ranks: Ranks) -> tuple[torch.Tensor, bool]:
    """(the mean loss over ranks, whether any rank wants to stop): one small all-reduce per step, so that a
    signal seen by one rank stops every rank after the same step."""
    if not ranks.active:
        return loss, stop
    both = torch.stack([loss.detach().float(), torch.full_like(loss, float(stop), dtype=torch.float32)])
    dist.all_reduce(both)
    return both[0] / ranks.world, bool(both[1].item() > 0)


def barrier(ranks: Ranks) -> None:
    """Wait for every rank (nothing with one)."""
    if ranks.active:
        dist.barrier()


__all__ = [
    "Ranks",
    "barrier",
    "broadcast_bytes",
    "env_ranks",
    "local_batch_size",
    "process_group",
    "resolve_device",
    "step_consensus",
]
