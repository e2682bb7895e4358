"""Gradient steps per second of the Push-T default model: one process with 1 or 2 torch threads against
2 data-parallel ranks (DDP, gloo) with 1 thread each, at the same global batch.

Every configuration runs in freshly spawned process(es) (the torchrun environment contract, as `scorepolicy
train --ranks N` starts them) and times the training loop's own step (`train_step`: the rank's share of the
batch, loss, backward with DDP's gradient all-reduce, clipping, AdamW; then the EMA update and the per-step
stop consensus) for `--seconds` after `--warmup` steps; no logging or checkpoints. The machine's load
average is recorded at the start and around each configuration: the ≥ 1.6× target for 2 ranks needs an
idle machine. Writes benchmarks/results/ddp_speed.json.

    python benchmarks/ddp_speed.py --data ../shared/data/pusht_cchi_v7_replay.zarr
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import tyro

from scorepolicy.api.jobs import recipe_job
from scorepolicy.api.training import TrainJob, build_datasets, load_task_data, make_policy
from scorepolicy.diffusion.random import ShardedGenerator
from scorepolicy.files import atomic_write_json
from scorepolicy.provenance import provenance
from scorepolicy.training.distributed import (
    env_ranks,
    local_batch_size,
    process_group,
    step_consensus,
)
from scorepolicy.training.launch import launch_ranks
from scorepolicy.training.loop import ema_update, make_state, train_step, wrap_for_ranks

RESULTS = Path(__file__).parent / "results"
CONFIGS = (("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2), ("2 ranks x 1 thread", 2, 1))
"""(name, ranks, torch threads per rank)."""


@dataclass
class Args:
    """DDP speed benchmark options."""

    data: Path = Path("../shared/data/pusht_cchi_v7_replay.zarr")
    """The Push-T replay zarr."""
    seconds: float = 60.0
    """Timed seconds per configuration (after the warm-up)."""
    warmup: int = 30
    """Untimed steps first (allocations, caches)."""
    batch_size: int = 256
    """Global batch (each of 2 ranks takes half)."""
    out: Path = RESULTS / "ddp_speed.json"
    """Result JSON."""


def measure(job: TrainJob, seconds: float, warmup: int) -> dict[str, Any]:
    """In each rank: build the Push-T default policy, then time training steps; rank 0 decides when the
    time is up and every rank stops after the same step."""
    ranks, device = env_ranks(), torch.device("cpu")
    torch.set_num_threads(job.train.num_threads)
    with process_group(ranks, device):
        task, episodes, _ = load_task_data("pusht", job)
        train_data, _ = build_datasets(task, episodes, job.policy, job.dataset)
        policy = make_policy(task, job.policy, train_data, job.train.seed).train()
        state = make_state(policy, job.train)
        model = wrap_for_ranks(policy, ranks, device)
        noise = ShardedGenerator(state.noise_gen, ranks.rank, ranks.world)
        rows = ranks.rows(local_batch_size(job.train.batch_size, ranks))
        steps, start = 0, 0.0
        while True:
            idx = state.data_rng.integers(0, len(train_data), job.train.batch_size)[rows]
            loss, _ = train_step(model, state, train_data.batch(idx), noise, job.train)
            ema_update(state.ema, policy, job.train.ema_decay)
            steps += 1
            if steps == warmup:
                start = time.perf_counter()
            elapsed = time.perf_counter() - start if steps >= warmup else 0.0
            _, stop = step_consensus(loss, steps > warmup and elapsed >= seconds, ranks)
            if stop:
                break
        n_params = sum(p.numel() for p in policy.parameters())
    return {
        "steps": steps - warmup,
        "seconds": elapsed,
        "steps_per_s": (steps - warmup) / elapsed,
        "params": n_params,
    }


def main(args: Args) -> None:
    """Run the three configurations one after another; print the table; write the JSON."""
    load_start = os.getloadavg()
    rows = []
    for name, ranks, threads in CONFIGS:
        job = recipe_job("pusht")
        job.data = args.data
        job.train = dataclasses.replace(
            job.train, batch_size=args.batch_size, num_threads=threads, ranks=ranks, progress=False
        )
        before = os.getloadavg()[0]
        result = launch_ranks(measure, (job, args.seconds, args.warmup), ranks)
        rows.append(
            {
                "config": name,
                "ranks": ranks,
                "threads_per_rank": threads,
                **result,
                "load_1min_before": before,
                "load_1min_after": os.getloadavg()[0],
            }
        )
        print(
            f"{name:22s} {result['steps_per_s']:7.2f} steps/s  ({result['steps']} steps in {result['seconds']:.1f} s; "
            f"load {before:.1f} -> {rows[-1]['load_1min_after']:.1f})"
        )
    base = rows[0]["steps_per_s"]
    for row in rows:
        row["speedup_vs_1_thread"] = row["steps_per_s"] / base
    print("\n| configuration | steps/s | vs 1 process, 1 thread |\n|---|---|---|")
    for row in rows:
        print(f"| {row['config']} | {row['steps_per_s']:.2f} | {row['speedup_vs_1_thread']:.2f}x |")
    atomic_write_json(
        args.out,
        {
            "benchmark": "ddp_speed",
            "model": f"Push-T default policy ({rows[0]['params']:,} parameters)",
            "global_batch": args.batch_size,
            "seconds_per_config": args.seconds,
            "warmup_steps": args.warmup,
            "cpu_count": os.cpu_count(),
            "load_average_at_start": {"1min": load_start[0], "5min": load_start[1], "15min": load_start[2]},
            "results": rows,
            "target": "2 ranks >= 1.6x one process (1 thread) on an idle machine",
            "provenance": provenance("pusht"),
        },
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main(tyro.cli(Args))
