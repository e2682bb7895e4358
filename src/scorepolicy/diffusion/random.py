"""Sampling noise with one random stream per batch row, so that a row's draws do not depend on the batch.

A single `torch.Generator` hands out one block of numbers for a whole batch: which numbers row i gets
depends on how many rows come before it, so an episode's actions (and its result) change with the size
of the batch it is evaluated in. `RowGenerators` keeps one generator per row, seeded from that row's own
seed, and stacks per-row draws (the idea of NVlabs/edm's `StackedRandomGenerator`), so row i sees the
same numbers in a batch of 1 or of 200. Samplers and policies accept either kind wherever they take a
`generator`, and draw through `randn`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class RowGenerators:
    """One seeded `torch.Generator` per batch row; `randn` stacks an independent draw for each row."""

    def __init__(self, seeds: Sequence[int]) -> None:
        if len(seeds) == 0:
            raise ValueError("RowGenerators needs at least one seed")
        self.seeds = [int(s) for s in seeds]
        self.generators = [torch.Generator().manual_seed(s % (1 << 63)) for s in self.seeds]

    @classmethod
    def concat(cls, parts: Sequence[RowGenerators]) -> RowGenerators:
        """The rows of `parts` one after another, sharing their generators (draws advance the originals)."""
        rows = cls.__new__(cls)
        rows.seeds = [s for p in parts for s in p.seeds]
        rows.generators = [g for p in parts for g in p.generators]
        if not rows.generators:
            raise ValueError("RowGenerators needs at least one seed")
        return rows

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int], dtype: torch.dtype | None = None) -> Tensor:
        """Standard-normal noise of `shape` (shape[0] = number of rows), row i from generator i."""
        if len(shape) == 0 or shape[0] != len(self.generators):
            raise ValueError(
                f"RowGenerators has {len(self.generators)} rows but noise of shape {tuple(shape)} was asked for"
            )
        rows = [torch.randn(tuple(shape[1:]), generator=g, dtype=dtype) for g in self.generators]
        return torch.stack(rows)


NoiseSource = torch.Generator | RowGenerators
"""Where sampling noise comes from: one stream for the whole batch, or one per row."""


def randn(
    shape: Sequence[int], generator: NoiseSource | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """Standard-normal noise of `shape` from a generator (None: torch's global one) or per-row generators."""
    if isinstance(generator, RowGenerators):
        return generator.randn(shape, dtype)
    return torch.randn(tuple(shape), generator=generator, dtype=dtype)
