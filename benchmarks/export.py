"""ONNX export: chunk latency of the exported graph (onnxruntime) beside the torch paths, and parity.

For each NFE the run is exported (`export_onnx`), then the milliseconds per chunk at batch 1 on one thread
are timed for three paths, interleaved round by round so that a change in machine load hits every path
alike: onnxruntime on the graph, the frozen TorchScript whole-chunk graph of `optimize_for_inference`
('torch-graph', what `eval` and `latency` use), and eager torch. Parity: the largest absolute difference
between the ONNX chunk and each torch path's for the same observations and noise (observations drawn
uniformly in the run's normalisation range), in raw action units and in normalised units (raw / half the
action range: the scale the sampler works in), beside the two torch paths' own difference and the float32
spacing at the largest action (Push-T actions reach 512 px, where float32 steps by 3e-5 to 6e-5).
Writes benchmarks/results/export.json.

    python benchmarks/export.py --run runs/pusht
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro

from scorepolicy import api
from scorepolicy.export import export_onnx
from scorepolicy.export.runtime import OnnxPolicy
from scorepolicy.files import atomic_write_json
from scorepolicy.policies import ChunkPolicy
from scorepolicy.provenance import package_version, provenance

RESULTS = Path(__file__).parent / "results"


@dataclass
class Args:
    """Export benchmark options."""

    run: Path = Path("runs/pusht")
    """Run directory of a score policy."""
    nfes: tuple[int, ...] = (1, 3)
    """NFEs to export and time."""
    rounds: int = 10
    """Interleaved timing rounds per NFE (each path timed once per round)."""
    repeats: int = 200
    """Timed calls per path and round (after 20 warm-up calls)."""
    parity_batch: int = 256
    """Observations (and noises) the parity is measured on."""
    out: Path = RESULTS / "export.json"
    """Result JSON."""


def time_calls(call: Callable[[], Any], repeats: int) -> list[float]:
    """Milliseconds of each of `repeats` calls (after 20 untimed ones)."""
    for _ in range(20):
        call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def parity(a: OnnxPolicy | ChunkPolicy, b: ChunkPolicy, batch: int, nfe: int) -> dict[str, float]:
    """Largest |a − b| over a batch of in-range observations and seeded noise (raw and normalised), and
    the float32 spacing at the largest action magnitude (the resolution of the raw values)."""
    g = torch.Generator().manual_seed(0)
    cfg = b.cfg
    lo, hi = b.obs_min, b.obs_max
    obs = lo + (hi - lo) * torch.rand(batch, cfg.n_obs_steps, cfg.obs_dim, generator=g)
    noise = torch.randn(batch, cfg.horizon, cfg.action_dim, generator=g)

    def chunk(policy: OnnxPolicy | ChunkPolicy) -> torch.Tensor:
        if isinstance(policy, OnnxPolicy):
            return policy.predict_action_chunk(obs, noise=noise)
        return policy.predict_action_chunk(obs, noise=noise, nfe=nfe)  # type: ignore[call-arg]

    reference = chunk(b)
    diff = (chunk(a) - reference).abs()
    half = ((b.action_max - b.action_min) / 2).clamp_min(1e-6)
    spacing = float(np.spacing(np.float32(reference.abs().max())))
    return {"raw": float(diff.max()), "normalised": float((diff / half).max()), "float32_spacing": spacing}


def bench_nfe(args: Args, nfe: int, folder: Path) -> dict[str, Any]:
    """Export at `nfe`, time the three paths interleaved, measure parity."""
    t0 = time.perf_counter()
    result = export_onnx(args.run, nfe, folder / f"nfe{nfe}.onnx")
    export_seconds = time.perf_counter() - t0
    graph = OnnxPolicy(result.path, threads=1)
    frozen = api.load_policy(args.run, nfe=nfe)  # optimize_for_inference: the whole-chunk TorchScript graph
    eager = ChunkPolicy.from_pretrained(args.run)
    eager.cfg.diffusion.nfe = nfe
    paths: dict[str, Any] = {"onnx": graph, frozen.inference_path(): frozen, eager.inference_path(): eager}
    obs = torch.zeros(1, frozen.cfg.n_obs_steps, frozen.cfg.obs_dim) + (frozen.obs_min + frozen.obs_max) / 2
    times: dict[str, list[float]] = {name: [] for name in paths}
    round_medians: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, policy in paths.items():
            t = time_calls(lambda p=policy: p.predict_action_chunk(obs), args.repeats)
            times[name] += t
            round_medians[name].append(statistics.median(t))
    latency = {
        name: {
            "ms_median": round(statistics.median(t), 4),
            "ms_p90": round(sorted(t)[int(0.9 * (len(t) - 1))], 4),
            "round_medians_ms": [round(m, 4) for m in round_medians[name]],
            "rounds_onnx_faster": sum(a < b for a, b in zip(round_medians["onnx"], round_medians[name])),
        }
        for name, t in times.items()
    }
    return {
        "nfe": nfe,
        "sampler": result.metadata["sampler"],
        "opset": result.metadata["opset"],
        "export_seconds": round(export_seconds, 1),
        "onnx_bytes": result.path.stat().st_size,
        "latency": latency,
        "parity_vs_torch_graph": parity(graph, frozen, args.parity_batch, nfe),
        "parity_vs_torch_eager": parity(graph, eager, args.parity_batch, nfe),
        "parity_torch_graph_vs_torch_eager": parity(frozen, eager, args.parity_batch, nfe),
    }


def main(args: Args) -> dict[str, Any]:
    """Run every NFE, print the table and write the JSON."""
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for nfe in args.nfes:
            rows.append(bench_nfe(args, nfe, Path(folder)))
    print(f"{'NFE':>3} {'path':>14} {'ms/chunk':>9} {'p90':>7}   parity vs torch-graph (raw / normalised)")
    for row in rows:
        for name, lat in row["latency"].items():
            par = row["parity_vs_torch_graph"] if name == "onnx" else None
            note = f"   {par['raw']:.2e} / {par['normalised']:.2e}" if par else ""
            print(f"{row['nfe']:>3} {name:>14} {lat['ms_median']:9.3f} {lat['ms_p90']:7.3f}{note}")
    first = next(iter(rows[0]["latency"]))
    out = {
        "run": str(args.run),
        "batch": 1,
        "threads": 1,
        "rounds": args.rounds,
        "repeats_per_round": args.repeats,
        "parity_batch": args.parity_batch,
        "protocol": (
            f"batch 1, one thread; per NFE {args.rounds} interleaved rounds of {args.repeats} timed calls per "
            f"path (paths: {', '.join(rows[0]['latency'])}; '{first}' is onnxruntime on the exported graph); "
            f"parity on {args.parity_batch} observations uniform in the normalisation range with seeded noise"
        ),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
        "onnxruntime_version": package_version("onnxruntime"),
        "results": rows,
        "provenance": provenance(api.recorded_task(args.run)),
    }
    out["provenance"]["versions"].update(
        {n: package_version(n) for n in ("onnx", "onnxruntime", "onnxscript")}
    )
    atomic_write_json(args.out, out)
    print(
        f"load average before {load_before[0]:.2f}, after {out['load_average_after'][0]:.2f}; -> {args.out}"
    )
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
