"""FIPER failure prediction on Push-T (and the obstacle task with --obstacles-run): a monitor calibrated on
successful nominal rollouts (seeds 300000..), then 100 test episodes (seeds 100000..) per condition
(nominal, obs-noise, block-shift, unseen-start), guarded. Per condition: success, and for FIPER's rule and the
RND-alone / entropy-alone baselines on the same episodes: TPR, TNR, accuracy, mean detection time and TWA with
intervals; false-alarm rate on the fresh nominal successes for δ = 0.05 and 0.1; a window sweep; the
monitor's overhead per decision (B = 8, NFE 3, batch 1, one thread); a PNG of both scores over time for a
failing and a succeeding episode. Writes benchmarks/results/guard.json and guard.png (provenance inside).

    nice -n 15 python benchmarks/guard.py --run /work/runs/pusht
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import tyro

from scorepolicy.api.guard import BenchConfig, format_bench, run_bench
from scorepolicy.files import atomic_write_json
from scorepolicy.provenance import provenance

RESULTS = Path(__file__).parent / "results"
FIPER_PAPER = {
    "source": "Römer, Kobras et al., NeurIPS 2025 (arXiv 2510.09459), averages over their five tasks",
    "FIPER": {"twa": 0.65, "accuracy": 0.78, "mean_detection_time": 0.30, "tpr": 0.92, "tnr": 0.65},
    "RND-OE alone": {"twa": 0.59, "accuracy": 0.67, "mean_detection_time": 0.18},
    "ACE alone": {"twa": 0.63, "accuracy": 0.74, "mean_detection_time": 0.25},
    "note": "their headline uses time-varying thresholds and averages 1-δ over 0.90..0.99",
}


@dataclass
class Args:
    """Guard benchmark options."""

    run: Path = Path("/work/runs/pusht")
    """Push-T run directory (score policy)."""
    obstacles_run: Path | None = None
    """Also benchmark this obstacle-task run (entropy on summed velocities)."""
    calibration_episodes: int = 150
    """Calibration episodes (about 40% succeed on Push-T: ~60 successes, half fit the RND)."""
    episodes: int = 100
    """Test episodes per condition."""
    delta: float = 0.05
    """δ of the headline monitor."""
    conditions: str = "nominal,obs-noise,block-shift,unseen-start"
    """Conditions to test."""
    out: Path = RESULTS / "guard.json"
    """Result JSON."""
    plot: Path = RESULTS / "guard.png"
    """Score plot (Push-T)."""


def main(args: Args) -> dict[str, Any]:
    """Run the benchmark, print the tables, write the JSON and the plot."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    common = {
        "calibration_episodes": args.calibration_episodes,
        "episodes": args.episodes,
        "delta": args.delta,
        "conditions": args.conditions,
    }
    out: dict[str, Any] = {"fiper_paper": FIPER_PAPER}
    out["pusht"] = run_bench(BenchConfig(run=args.run, plot=args.plot, **common))  # type: ignore[arg-type]
    print("Push-T\n" + format_bench(out["pusht"]))
    if args.obstacles_run is not None:
        cfg = BenchConfig(
            run=args.obstacles_run,
            positions="cumsum",
            plot=args.plot.with_name("guard_obstacles.png"),
            **common,
        )  # type: ignore[arg-type]
        out["obstacles"] = run_bench(cfg)
        print("obstacle task\n" + format_bench(out["obstacles"]))
    out["minutes"] = (time.perf_counter() - t0) / 60
    out["provenance"] = provenance("pusht")
    atomic_write_json(args.out, out)
    print(f"wrote {args.out} ({out['minutes']:.1f} min)")
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
