"""Loading Push-T's recorded camera frames: all 25,650 96 × 96 RGB frames of the replay zarr (`data/img`,
float32 0..255, blosc/zstd) into uint8 in memory, with the state and action arrays (what `pusht-image`
training reads: `load_dataset(path, images=True)`). Target: ≤ 10 s. Wall and CPU seconds are both reported
(the machine may be shared: the 1-minute load average at the start of each load is recorded too). Prints a
table and writes benchmarks/results/pusht_image_loading.json.

    python benchmarks/pusht_image_loading.py
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from scorepolicy.data.formats import load_dataset
from scorepolicy.envs.pusht_image import PUSHT_IMAGE_TASK
from scorepolicy.files import atomic_write_json
from scorepolicy.provenance import provenance

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGET_S = 10.0


@dataclass
class Args:
    """Push-T frame loading benchmark options."""

    data: Path = SHARED / "pusht_cchi_v7_replay.zarr"
    """The Push-T replay zarr."""
    repeats: int = 3
    """Timed loads."""
    out: Path = RESULTS / "pusht_image_loading.json"
    """Result JSON."""


def time_load(path: Path) -> dict[str, Any]:
    """One load with frames: wall and CPU seconds, and what came back."""
    load_avg = os.getloadavg()[0]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    episodes = load_dataset(path, images=True)
    images = PUSHT_IMAGE_TASK.dataset_images(episodes)  # type: ignore[misc]
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    frames = images["image"]
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "load_avg_1min": load_avg,
        "frames": int(frames.shape[0]),
        "frame_shape": list(frames.shape[1:]),
        "dtype": str(frames.dtype),
        "frame_bytes": int(frames.nbytes),
        "mean_pixel": float(np.mean(frames[:: max(1, len(frames) // 500)])),
    }


def main(args: Args) -> None:
    load_dataset(args.data)  # warm-up: imports and the OS file cache (state/action)
    runs = [time_load(args.data) for _ in range(args.repeats)]
    walls = [r["wall_s"] for r in runs]
    print(f"{'run':>4} {'wall s':>8} {'cpu s':>8} {'load avg':>9} {'frames':>7}  shape")
    for i, r in enumerate(runs):
        print(
            f"{i:>4} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} {r['load_avg_1min']:>9.2f} {r['frames']:>7}  "
            f"{tuple(r['frame_shape'])} {r['dtype']} ({r['frame_bytes'] / 1e6:.0f} MB)"
        )
    summary = {
        "dataset": str(args.data),
        "target_s": TARGET_S,
        "wall_s_best": min(walls),
        "wall_s_median": statistics.median(walls),
        "cpu_s_best": min(r["cpu_s"] for r in runs),
        "meets_target": min(walls) <= TARGET_S,
        "cpu_count": os.cpu_count(),
        "runs": runs,
        "provenance": provenance(),
    }
    print(
        f"best {summary['wall_s_best']:.2f} s wall (target ≤ {TARGET_S:.0f} s), {summary['cpu_s_best']:.2f} s CPU"
    )
    atomic_write_json(args.out, summary)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(tyro.cli(Args))
