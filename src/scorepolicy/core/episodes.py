"""The one in-memory value every data reader produces: arrays per key plus episode boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scorepolicy.errors import ScorePolicyError


@dataclass
class Episodes:
    """Concatenated episodes: every array in `data` has the same first dimension (total steps).

    `episode_ends[i]` is the exclusive end index of episode i (as in Diffusion Policy's replay buffer),
    so episode i spans `episode_ends[i-1]:episode_ends[i]` (starting at 0 for i = 0).
    """

    data: dict[str, np.ndarray]
    """Per-key arrays of shape (total_steps, ...); float32 for observations and actions."""
    episode_ends: np.ndarray
    """Exclusive end index of each episode, int64, strictly increasing, last == total_steps."""
    source: str = ""
    """Where the episodes came from (a path or a generator name), used in error messages."""
    attrs: dict[str, object] = field(default_factory=dict)
    """Free-form metadata (fps, task names, ...), JSON-serialisable."""

    def __post_init__(self) -> None:
        self.episode_ends = np.asarray(self.episode_ends, dtype=np.int64)
        ends = self.episode_ends
        where = self.source or "episodes"
        if ends.ndim != 1 or len(ends) == 0:
            raise ScorePolicyError(f"{where}: episode_ends must be a non-empty 1-D array of end indices")
        if np.any(np.diff(ends) <= 0) or ends[0] <= 0:
            raise ScorePolicyError(f"{where}: episode_ends must be strictly increasing and positive")
        for key, arr in self.data.items():
            if arr.shape[0] != ends[-1]:
                raise ScorePolicyError(
                    f"{where}: field '{key}' has {arr.shape[0]} steps but episode_ends ends at {ends[-1]}"
                )

    @property
    def n_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def n_steps(self) -> int:
        return int(self.episode_ends[-1])

    @property
    def episode_starts(self) -> np.ndarray:
        return np.concatenate([[0], self.episode_ends[:-1]]).astype(np.int64)

    def episode_slice(self, i: int) -> slice:
        return slice(int(self.episode_starts[i]), int(self.episode_ends[i]))

    def select(self, indices: np.ndarray | list[int]) -> Episodes:
        """A new Episodes holding only the given episodes, in the given order."""
        idx = [int(i) for i in indices]
        parts = [np.arange(self.episode_starts[i], self.episode_ends[i]) for i in idx]
        rows = np.concatenate(parts)
        lengths = np.array([len(p) for p in parts], dtype=np.int64)
        return Episodes(
            data={k: v[rows] for k, v in self.data.items()},
            episode_ends=np.cumsum(lengths),
            source=self.source,
            attrs=dict(self.attrs),
        )
