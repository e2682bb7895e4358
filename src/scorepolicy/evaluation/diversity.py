"""Behaviour diversity (D3IL, METHODS.md §5): entropy of the behaviours (modes) of successful rollouts.

A task reports one behaviour label per episode (an int in [0, |B|), −1 = none, e.g. the obstacle task's
route); only successful episodes count. H = −Σ π(β) log_|B| π(β) lies in [0, 1]: 1 means every
behaviour equally often, 0 a single one. Multi-context tasks average the entropy of π(β | context) over
the contexts; KL(π ‖ p_data) compares with the demonstrations' behaviour distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from scorepolicy.core.behaviour import behaviour_counts, behaviour_entropy, entropy_of

_EPS = 1e-12  # D3IL's renormalisation constant

__all__ = [
    "behaviour_counts",
    "behaviour_entropy",
    "behaviour_kl",
    "conditional_behaviour_entropy",
    "diversity_metrics",
    "entropy_of",
    "successful_labels",
]


def conditional_behaviour_entropy(
    labels: Sequence[int],
    contexts: Sequence[Any],
    n_behaviours: int,
    *,
    drop_empty: bool = True,
) -> float:
    """Context-averaged entropy −(1/S) Σ_s Σ_β π(β|s) log_|B| π(β|s) (D3IL Eq. 2, Monte-Carlo form).

    `labels` and `contexts` have one entry per successful rollout (label −1: no behaviour). π(β|s) is the
    label histogram within a context, renormalised. Contexts without any labelled rollout are dropped
    (`drop_empty`, as D3IL does for Sorting/Stacking) or count as entropy 0.
    """
    if len(labels) != len(contexts):
        raise ValueError("labels and contexts need one entry per rollout")
    groups: dict[Any, list[int]] = {}
    for label, ctx in zip(labels, contexts):
        groups.setdefault(ctx, []).append(int(label))
    values = []
    for group in groups.values():
        counts = behaviour_counts(group, n_behaviours)
        if counts.sum() == 0 and drop_empty:
            continue
        values.append(entropy_of(counts, n_behaviours))
    return float(np.mean(values)) if values else 0.0


def behaviour_kl(labels: Sequence[int], data_probs: Sequence[float] | np.ndarray, n_behaviours: int) -> float:
    """KL(π ‖ p_data) in log base |B| (= −H − Σ π log_|B| p_data), π the labels' distribution; behaviours the
    data never shows get D3IL's 1e-12 floor, so visiting them costs a large but finite amount."""
    q = np.asarray(data_probs, dtype=float)
    if q.shape != (n_behaviours,) or (q < 0).any() or q.sum() <= 0:
        raise ValueError(f"data_probs must be {n_behaviours} non-negative numbers with a positive sum")
    q = q / q.sum()
    counts = behaviour_counts(labels, n_behaviours)
    if counts.sum() == 0 or n_behaviours < 2:
        return 0.0
    p = counts / counts.sum()
    keep = p > 0
    return float((p[keep] * np.log(p[keep] / (q[keep] + _EPS))).sum() / math.log(n_behaviours))


def successful_labels(records: Sequence[dict[str, Any]], key: str) -> list[int]:
    """Behaviour labels (≥ 0) of the successful, error-free episode records."""
    out = []
    for r in records:
        if "error" in r or not r.get("success") or r.get(key) is None:
            continue
        label = int(r[key])
        if label >= 0:
            out.append(label)
    return out


def diversity_metrics(
    records: Sequence[dict[str, Any]],
    key: str,
    n_behaviours: int,
    data_probs: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Behaviour entropy, distinct behaviours and counts over successful episodes; with several rollouts
    per seed also the context-averaged entropy (context = seed); with `data_probs` the KL to the data."""
    labels = successful_labels(records, key)
    counts = behaviour_counts(labels, n_behaviours)
    out: dict[str, Any] = {
        "behaviour_entropy": entropy_of(counts, n_behaviours),
        "n_behaviours_seen": int((counts > 0).sum()),
        "n_behaviours": n_behaviours,
        "behaviour_counts": [int(c) for c in counts],
    }
    ok = [r for r in records if "error" not in r and r.get("success") and int(r.get(key, -1)) >= 0]
    seeds = [r["seed"] for r in ok]
    if len(set(seeds)) < len(seeds):
        out["conditional_behaviour_entropy"] = conditional_behaviour_entropy(
            [int(r[key]) for r in ok], seeds, n_behaviours
        )
    if data_probs is not None:
        out["behaviour_kl"] = behaviour_kl(labels, data_probs, n_behaviours)
    return out
