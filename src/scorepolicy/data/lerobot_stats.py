"""Per-episode and dataset statistics as LeRobot stores them (min, max, mean, std, count, quantiles)."""

from __future__ import annotations

import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
"""Quantile statistics LeRobot records for every numeric feature."""

Stats = dict[str, np.ndarray]


def feature_stats(values: np.ndarray) -> Stats:
    """Statistics of one feature over one episode: each entry has the feature's per-frame shape.

    `values` is (n, ...) or (n,) for a scalar feature, whose statistics then have shape (1,).
    Quantiles are exact (linear interpolation); LeRobot's own are histogram estimates of the same.
    """
    arr = np.asarray(values)
    flat = arr.reshape(len(arr), -1) if arr.ndim > 1 else arr[:, None]
    as_float = flat.astype(np.float64)
    stats: Stats = {
        "min": flat.min(axis=0),
        "max": flat.max(axis=0),
        "mean": as_float.mean(axis=0),
        "std": as_float.std(axis=0),
        "count": np.array([len(flat)], dtype=np.int64),
    }
    if len(flat) < 2:
        stats.update({k: stats["mean"].copy() for k in QUANTILES})
    else:
        qs = np.quantile(as_float, list(QUANTILES.values()), axis=0)
        stats.update({k: qs[i] for i, k in enumerate(QUANTILES)})
    if stats["min"].dtype.kind == "b":
        stats["min"], stats["max"] = stats["min"].astype(np.int64), stats["max"].astype(np.int64)
    return stats


def aggregate(stats_list: list[Stats]) -> Stats:
    """Dataset statistics from per-episode ones, as LeRobot aggregates them.

    Count-weighted mean, pooled standard deviation, elementwise min/max; the lower quantiles (≤ q50)
    take the minimum over episodes and the upper ones the maximum.
    """
    counts = np.array([s["count"][0] for s in stats_list], dtype=np.float64)
    means = np.stack([np.asarray(s["mean"], dtype=np.float64) for s in stats_list])
    variances = np.stack([np.asarray(s["std"], dtype=np.float64) ** 2 for s in stats_list])
    weights = counts.reshape(-1, *([1] * (means.ndim - 1)))
    total = counts.sum()
    mean = (means * weights).sum(axis=0) / total
    variance = ((variances + (means - mean) ** 2) * weights).sum(axis=0) / total
    out: Stats = {
        "min": np.min(np.stack([s["min"] for s in stats_list]), axis=0),
        "max": np.max(np.stack([s["max"] for s in stats_list]), axis=0),
        "mean": mean,
        "std": np.sqrt(variance),
        "count": np.array([int(total)], dtype=np.int64),
    }
    for key, q in QUANTILES.items():
        stacked = np.stack([np.asarray(s[key], dtype=np.float64) for s in stats_list])
        out[key] = stacked.min(axis=0) if q <= 0.5 else stacked.max(axis=0)
    return out


def stats_to_json(stats: dict[str, Stats]) -> dict[str, dict[str, list[float | int]]]:
    """Nested lists (stats.json layout) from numpy statistics."""
    return {key: {name: np.asarray(v).tolist() for name, v in s.items()} for key, s in stats.items()}
