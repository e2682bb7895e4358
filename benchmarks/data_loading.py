"""Data loading speed: the Push-T replay zarr (25,650 steps) and the SO-101 LeRobot v3.0 recording
(1,492 frames); target < 1 s each. Imports are warmed first; the best and median of several loads
are reported. Prints a table and writes benchmarks/results/data_loading.json.

    python benchmarks/data_loading.py
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from scorepolicy.data.formats import detect_format, load_dataset
from scorepolicy.data.validate import validate_dataset
from scorepolicy.files import atomic_write_json
from scorepolicy.provenance import provenance

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass
class Args:
    """Data loading benchmark options."""

    datasets: tuple[Path, ...] = (SHARED / "pusht_cchi_v7_replay.zarr", SHARED / "so101_record_test")
    """Datasets to time (any supported format)."""
    repeats: int = 5
    """Timed loads per dataset."""
    out: Path = RESULTS / "data_loading.json"
    """Result JSON."""


def time_one(path: Path, repeats: int) -> dict[str, Any]:
    """Load `path` `repeats` times (after one warm-up load) and time it; validation once."""
    episodes = load_dataset(path)  # warm-up: imports and the OS file cache
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        load_dataset(path)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    report = validate_dataset(path, horizon=16)
    validate_s = time.perf_counter() - t0
    return {
        "dataset": str(path),
        "format": detect_format(path),
        "episodes": episodes.n_episodes,
        "steps": episodes.n_steps,
        "keys": sorted(episodes.data),
        "load_s_best": min(times),
        "load_s_median": statistics.median(times),
        "validate_s": validate_s,
        "valid": report.ok,
        "under_1s": max(times) < 1.0,
    }


def main(args: Args) -> None:
    rows = [time_one(p, args.repeats) for p in args.datasets if p.exists()]
    print(
        f"{'dataset':<32} {'format':<10} {'episodes':>8} {'steps':>7} {'load best':>10} {'median':>8} {'validate':>9}"
    )
    for r in rows:
        print(
            f"{Path(r['dataset']).name:<32} {r['format']:<10} {r['episodes']:>8} {r['steps']:>7} "
            f"{r['load_s_best']:>9.3f}s {r['load_s_median']:>7.3f}s {r['validate_s']:>8.3f}s"
        )
    atomic_write_json(args.out, {"repeats": args.repeats, "results": rows, "provenance": provenance()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(tyro.cli(Args))
