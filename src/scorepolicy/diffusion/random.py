"""Random streams for sampling and training noise, on any device.

A single `torch.Generator` hands out one block of numbers for a whole batch: which numbers row i gets
depends on how many rows come before it, so an episode's actions (and its result) change with the size
of the batch it is evaluated in. `RowGenerators` keeps one generator per row, seeded from that row's own
seed, and stacks per-row draws (the idea of NVlabs/edm's `StackedRandomGenerator`), so row i sees the
same numbers in a batch of 1 or of 200. Samplers and policies accept either kind wherever they take a
`generator`, and draw through `randn`.

`ShardedGenerator` is the training-side counterpart for data-parallel ranks: every rank draws the noise
of the whole global batch from the same seeded stream and keeps its own rows, so that W ranks together
use exactly the numbers one process would at the same global batch.

Generators live on the device their numbers are made on (`generator_device`): CUDA generators for a CUDA
model, CPU generators for CPU (and for torch's `meta` device, which has no generator of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def generator_device(device: torch.device | str | None) -> torch.device:
    """Where a generator for tensors on `device` must live: that device for accelerators, else the CPU."""
    dev = torch.device("cpu" if device is None else device)
    return torch.device("cpu") if dev.type in ("cpu", "meta") else dev


def make_generator(seed: int, device: torch.device | str | None = None) -> torch.Generator:
    """A `torch.Generator` seeded with `seed` for tensors made on `device`."""
    return torch.Generator(generator_device(device)).manual_seed(int(seed) % (1 << 63))


class RowGenerators:
    """One seeded `torch.Generator` per batch row; `randn` stacks an independent draw for each row."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str | None = None) -> None:
        if len(seeds) == 0:
            raise ValueError("RowGenerators needs at least one seed")
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device("cpu" if device is None else device)
        self.generators = [make_generator(s, self.device) for s in self.seeds]

    @classmethod
    def concat(cls, parts: Sequence[RowGenerators]) -> RowGenerators:
        """The rows of `parts` one after another, sharing their generators (draws advance the originals)."""
        rows = cls.__new__(cls)
        rows.seeds = [s for p in parts for s in p.seeds]
        rows.generators = [g for p in parts for g in p.generators]
        if not rows.generators:
            raise ValueError("RowGenerators needs at least one seed")
        devices = {p.device for p in parts}
        if len(devices) != 1:
            raise ValueError(f"RowGenerators.concat: parts on several devices ({sorted(map(str, devices))})")
        rows.device = devices.pop()
        return rows

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int], dtype: torch.dtype | None = None) -> Tensor:
        """Standard-normal noise of `shape` (shape[0] = number of rows), row i from generator i."""
        if len(shape) == 0 or shape[0] != len(self.generators):
            raise ValueError(
                f"RowGenerators has {len(self.generators)} rows but noise of shape {tuple(shape)} was asked for"
            )
        rows = [
            torch.randn(tuple(shape[1:]), generator=g, dtype=dtype, device=self.device)
            for g in self.generators
        ]
        return torch.stack(rows)


class ShardedGenerator:
    """Rank `rank`'s rows of noise drawn for a global batch `world` times the local one, from one stream.

    Every draw asks for a local shape (B_local, ...); the stream is advanced by (world · B_local, ...)
    numbers exactly as one process drawing for the global batch would, and rows rank·B_local ..
    (rank + 1)·B_local are returned. With world = 1 it is the generator itself.
    """

    def __init__(self, generator: torch.Generator, rank: int = 0, world: int = 1) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"ShardedGenerator: rank {rank} outside 0..{world - 1}")
        self.generator, self.rank, self.world = generator, rank, world

    def draw(
        self, make: Callable[[tuple[int, ...], torch.Generator], Tensor], shape: Sequence[int]
    ) -> Tensor:
        """`make(global_shape, generator)` restricted to this rank's rows of dimension 0."""
        shape = tuple(int(s) for s in shape)
        if self.world == 1 or len(shape) == 0:
            return make(shape, self.generator)
        n = shape[0]
        full = make((n * self.world, *shape[1:]), self.generator)
        return full[self.rank * n : (self.rank + 1) * n]


NoiseSource = torch.Generator | RowGenerators
"""Where sampling noise comes from: one stream for the whole batch, or one per row."""
TrainNoise = torch.Generator | ShardedGenerator
"""Where training noise comes from: one stream, or a data-parallel rank's share of one."""


def randn(
    shape: Sequence[int],
    generator: NoiseSource | ShardedGenerator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Standard-normal noise of `shape` on `device` from a generator (None: torch's global one), per-row
    generators or a rank's share of a global batch."""
    if isinstance(generator, RowGenerators):
        return generator.randn(shape, dtype).to(device or generator.device)
    if isinstance(generator, ShardedGenerator):
        return generator.draw(lambda s, g: torch.randn(s, generator=g, dtype=dtype, device=device), shape)
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)


def rand(
    shape: Sequence[int], generator: TrainNoise | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Uniform [0, 1) numbers of `shape` on `device` (a rank's share with a ShardedGenerator)."""
    if isinstance(generator, ShardedGenerator):
        return generator.draw(lambda s, g: torch.rand(s, generator=g, device=device), shape)
    return torch.rand(tuple(shape), generator=generator, device=device)


def bernoulli(
    shape: Sequence[int],
    p: float,
    generator: TrainNoise | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """0/1 floats of `shape` on `device`, each 1 with probability p (a rank's share with a ShardedGenerator)."""

    def make(s: tuple[int, ...], g: torch.Generator | None) -> Tensor:
        return torch.bernoulli(torch.full(s, p, device=device), generator=g)

    if isinstance(generator, ShardedGenerator):
        return generator.draw(make, shape)
    return make(tuple(shape), generator)


def randint(
    high: int,
    shape: Sequence[int],
    generator: TrainNoise | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Integers in [0, high) of `shape` on `device` (a rank's share with a ShardedGenerator)."""
    if isinstance(generator, ShardedGenerator):
        return generator.draw(lambda s, g: torch.randint(0, high, s, generator=g, device=device), shape)
    return torch.randint(0, high, tuple(shape), generator=generator, device=device)
