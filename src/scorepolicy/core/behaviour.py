"""Behaviour entropy: the diversity measure that tasks (envs/) and evaluation both compute.

A behaviour label is an int in [0, |B|) (−1 = none). H = −Σ π(β) log_|B| π(β) lies in [0, 1]: 1 means
every behaviour equally often, 0 a single one (D3IL, METHODS.md §5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def check_n_behaviours(n_behaviours: int) -> None:
    """Raise ValueError unless there is at least one behaviour."""
    if n_behaviours < 1:
        raise ValueError(f"n_behaviours must be at least 1, got {n_behaviours}")


def behaviour_counts(labels: Sequence[int], n_behaviours: int) -> np.ndarray:
    """Counts (n_behaviours,) of the labels in [0, n_behaviours) (others, like −1, are ignored)."""
    check_n_behaviours(n_behaviours)
    lab = np.asarray([int(x) for x in labels], dtype=np.int64)
    lab = lab[(lab >= 0) & (lab < n_behaviours)]
    return np.bincount(lab, minlength=n_behaviours).astype(float)


def entropy_of(probs: np.ndarray, n_behaviours: int) -> float:
    """−Σ p log_n p of a distribution over n_behaviours (0 for n = 1 or an all-zero vector)."""
    check_n_behaviours(n_behaviours)
    p = np.asarray(probs, dtype=float)
    total = p.sum()
    if total <= 0 or n_behaviours < 2:
        return 0.0
    p = p[p > 0] / total
    return float(max(0.0, -(p * np.log(p)).sum() / math.log(n_behaviours)))


def behaviour_entropy(labels: Sequence[int], n_behaviours: int) -> float:
    """Entropy (log base |B|) of the empirical distribution of the labels (0 when there are none)."""
    return entropy_of(behaviour_counts(labels, n_behaviours), n_behaviours)
