"""Training windows: (obs[t−T_o+1 .. t], action[t .. t+T_p−1]) for every step t, padded at episode edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scorepolicy.errors import ScorePolicyError


def window_indices(episode_ends: np.ndarray, n_obs_steps: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (M, T_o) and (M, T_p) for one window per step, clamped to the step's own episode.

    Observations before an episode's first step repeat the first step; actions past its last step
    repeat the last action (edge padding, as in Diffusion Policy).
    """
    ends = np.asarray(episode_ends, dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    lengths = ends - starts
    t = np.arange(int(ends[-1]), dtype=np.int64)
    ep_start = np.repeat(starts, lengths)[:, None]
    ep_last = np.repeat(ends - 1, lengths)[:, None]
    obs_idx = np.maximum(t[:, None] + np.arange(-n_obs_steps + 1, 1), ep_start)
    act_idx = np.minimum(t[:, None] + np.arange(horizon), ep_last)
    return obs_idx, act_idx


@dataclass
class WindowDataset:
    """All training windows of a set of episodes, gathered by fancy indexing (no per-item Python)."""

    obs: np.ndarray
    """Per-step observations (N, d_o), float32."""
    actions: np.ndarray
    """Per-step actions (N, d_a), float32."""
    episode_ends: np.ndarray
    """Exclusive episode ends, as in `Episodes`."""
    n_obs_steps: int
    horizon: int
    images: dict[str, np.ndarray] = field(default_factory=dict)
    """Camera key -> uint8 frames (N, H, W, 3) aligned with `obs` (kept uint8; empty: no cameras)."""

    def __post_init__(self) -> None:
        self.obs = np.ascontiguousarray(self.obs, dtype=np.float32)
        self.actions = np.ascontiguousarray(self.actions, dtype=np.float32)
        for name, arr in (("observations", self.obs), ("actions", self.actions)):
            if arr.ndim != 2:
                raise ScorePolicyError(f"{name} must be 2-D (steps, dim), got shape {arr.shape}")
            bad = ~np.isfinite(arr).all(axis=1)
            if bad.any():
                step = int(np.argmax(bad))
                episode = int(np.searchsorted(self.episode_ends, step, side="right"))
                raise ScorePolicyError(
                    f"{name}: NaN or inf at step {step} (episode {episode}); clean or drop that episode"
                )
        for key, frames in self.images.items():
            if (
                frames.dtype != np.uint8
                or frames.ndim != 4
                or frames.shape[0] != len(self.obs)
                or frames.shape[3] != 3
            ):
                raise ScorePolicyError(
                    f"camera '{key}': expected uint8 frames ({len(self.obs)}, H, W, 3) aligned with the "
                    f"observations, got {frames.dtype} {frames.shape}"
                )
        self.obs_idx, self.act_idx = window_indices(self.episode_ends, self.n_obs_steps, self.horizon)

    def __len__(self) -> int:
        return len(self.obs_idx)

    def batch(self, idx: np.ndarray) -> dict[str, Any]:
        """Windows `idx` as {"obs": (B, T_o, d_o), "action": (B, T_p, d_a)}, and with cameras
        "images": {key: uint8 (B, T_o, H, W, 3)} (gathered by the same indices, still uint8)."""
        rows = self.obs_idx[idx]
        out: dict[str, Any] = {"obs": self.obs[rows], "action": self.actions[self.act_idx[idx]]}
        if self.images:
            out["images"] = {key: frames[rows] for key, frames in self.images.items()}
        return out


def split_episodes(
    n_episodes: int, val_fraction: float, seed: int, max_train: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of episode indices into (train, val); `max_train` caps the training set (DP: 90)."""
    if n_episodes < 1:
        raise ScorePolicyError("the dataset has no episodes")
    perm = np.random.default_rng(seed).permutation(n_episodes)
    n_val = round(n_episodes * val_fraction)
    if val_fraction > 0 and n_episodes > 1:
        n_val = max(1, min(n_val, n_episodes - 1))
    val, train = perm[:n_val], perm[n_val:]
    if max_train is not None:
        train = train[:max_train]
    return np.sort(train), np.sort(val)


def min_max_stats(arr: np.ndarray) -> dict[str, np.ndarray]:
    """Per-dimension min and max over the first axis (normalisation statistics)."""
    flat = np.asarray(arr, dtype=np.float64).reshape(-1, arr.shape[-1])
    return {"min": flat.min(axis=0).astype(np.float32), "max": flat.max(axis=0).astype(np.float32)}
