"""Push-T from pixels: training images per second, latency per chunk, and (optionally) a timed training run.

Speed: training steps (forward, backward, AdamW) of an image score policy on synthetic 96×96 frames (the
cost does not depend on their content), DP's shapes (T_o 2, horizon 16, random 84-px crops), for each
encoder and denoiser on one and two threads. Latency: `predict_action_chunk` at batch 1, one thread, NFE 3,
after `optimize_for_inference` (frames encoded once per chunk). With `--train-minutes M`, the pusht-image
task is trained from the replay zarr (90 episodes) for about M minutes (the step count from a measured step
time), with a snapshot every `--eval-every-minutes`; every snapshot is then evaluated (50 episodes of seeds
100000+, NFE 3) and the learning curve goes into the JSON's `training_runs` (one entry per encoder and
denoiser; the last snapshot is the run's result, the others are its curve).

    python benchmarks/pusht_image.py                                       # speed and latency, ~10 min
    python benchmarks/pusht_image.py --train-minutes 100 --eval-every-minutes 26 --threads 1 --denoiser unet1d
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro

from scorepolicy import api
from scorepolicy.envs.registry import get_task
from scorepolicy.evaluation import EvalConfig, evaluate
from scorepolicy.files import atomic_write_json, read_json
from scorepolicy.models import VisionConfig
from scorepolicy.policies import ChunkPolicy, PolicyConfig, ScorePolicy
from scorepolicy.provenance import provenance
from scorepolicy.training import TrainConfig
from scorepolicy.training.loop import make_optimizer, to_torch

RESULTS = Path(__file__).parent / "results"
SHAPE = (96, 96, 3)
"""Push-T's camera frames."""


@dataclass
class Args:
    """Push-T image benchmark options."""

    encoders: tuple[str, ...] = ("cnn", "resnet18")
    """Encoders to time."""
    denoisers: tuple[str, ...] = ("mlp", "unet1d")
    """Denoisers to time with each encoder."""
    batch: dict[str, int] = field(default_factory=lambda: {"cnn": 64, "resnet18": 16})
    """Training batch (windows of T_o = 2 frames) per encoder for the images/s measurement."""
    steps: int = 5
    """Timed training steps per encoder and thread count (after one warm-up step)."""
    repeats: int = 100
    """Timed chunks of the latency measurement."""
    train_minutes: float = 0.0
    """Minutes of Push-T-from-pixels training (0: skip the training run)."""
    eval_every_minutes: float = 30.0
    """Training minutes between snapshots (each evaluated once training ends: the learning curve)."""
    encoder: str = "cnn"
    """Encoder of the training run."""
    denoiser: str = "mlp"
    """Denoiser of the training run (and of its step-time measurement): mlp or unet1d (DP's CNN-based policy)."""
    data: Path = Path("/work/shared/data/pusht_cchi_v7_replay.zarr")
    """Push-T replay zarr (with its recorded frames)."""
    run: Path = Path("/work/runs/visionmodel/pusht-image")
    """Run directory of the training run (must not hold a run yet)."""
    threads: int = 2
    """torch threads of the training run."""
    episodes: int = 50
    """Evaluation episodes (seeds 100000+)."""
    out: Path = RESULTS / "pusht_image.json"
    """Result JSON (merged with what is there: each speed run is appended, the training part replaced)."""


def image_policy(encoder: str, denoiser: str = "mlp") -> ScorePolicy:
    """A Push-T image score policy (agent position + one 96×96 camera) with DP's chunking."""
    cfg = PolicyConfig(
        denoiser=denoiser,  # type: ignore[arg-type]
        obs_dim=2,
        action_dim=2,
        image_shapes={"image": SHAPE},
        vision=VisionConfig(encoder=encoder),  # type: ignore[arg-type]
    )
    torch.manual_seed(0)
    return ScorePolicy(cfg)


def images_per_second(encoder: str, batch: int, steps: int, threads: int, denoiser: str = "mlp") -> float:
    """Training frames per second (batch · T_o frames per step) on synthetic data."""
    policy = image_policy(encoder, denoiser).train()
    opt = make_optimizer(policy, TrainConfig())
    rng = np.random.default_rng(0)
    t_o = policy.cfg.n_obs_steps
    data = {
        "obs": rng.uniform(0, 512, (batch, t_o, 2)).astype(np.float32),
        "action": rng.uniform(0, 512, (batch, policy.cfg.horizon, 2)).astype(np.float32),
        "images": {"image": rng.integers(0, 256, (batch, t_o, *SHAPE), dtype=np.uint8)},
    }
    gen = torch.Generator().manual_seed(0)
    with api.torch_threads(threads):
        times = []
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            loss, _ = policy.compute_loss(to_torch(data), gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
    return batch * t_o / float(np.median(times[1:]))


def speed_rows(args: Args) -> list[dict[str, Any]]:
    """Images/s on 1 and 2 threads and the batch-1 latency, per encoder and denoiser."""
    rows = []
    for encoder, denoiser in ((e, d) for e in args.encoders for d in args.denoisers):
        batch = args.batch.get(encoder, 16)
        row: dict[str, Any] = {"encoder": encoder, "denoiser": denoiser, "train_batch": batch}
        for threads in (1, 2):
            ips = images_per_second(encoder, batch, args.steps, threads, denoiser)
            row[f"images_per_s_{threads}t"] = round(ips, 1)
        policy = image_policy(encoder, denoiser).eval().optimize_for_inference()
        lat = api.measure_latency(policy, batch=1, threads=1, repeats=args.repeats)
        row.update(latency_ms=round(lat["ms_per_chunk"], 2), latency_p90_ms=round(lat["ms_p90"], 2))
        row.update(nfe=lat["nfe"], path=lat["path"])
        rows.append(row)
        print(row, flush=True)
    return rows


def train_curve(args: Args) -> list[dict[str, Any]]:
    """Train for about train_minutes (steps from a measured step time), snapshot every eval_every_minutes,
    then evaluate every snapshot (50 episodes, seeds 100000+, NFE 3): the learning curve."""
    batch = 64
    per_step = batch * 2 / images_per_second(args.encoder, batch, 3, args.threads, args.denoiser)
    total = max(1, int(args.train_minutes * 60 / per_step))
    every = max(1, int(args.eval_every_minutes * 60 / per_step))
    job = api.TrainJob(task="pusht-image", data=args.data, out=args.run)
    job.dataset.max_train_episodes = 90
    job.policy.vision.encoder = args.encoder  # type: ignore[assignment]
    job.policy.denoiser = args.denoiser  # type: ignore[assignment]
    job.train.steps, job.train.batch_size, job.train.progress = total, batch, False
    job.train.num_threads, job.train.checkpoint_every = args.threads, every
    job.train.keep_snapshots = total // every + 2
    print(f"training {total} steps ({per_step:.2f} s/step measured), a snapshot every {every}", flush=True)
    t0 = time.perf_counter()
    api.run_training(job)
    minutes = (time.perf_counter() - t0) / 60
    task = get_task("pusht-image")
    curve = []
    for snap in sorted((args.run / "checkpoints").glob("step_*")):
        policy = ChunkPolicy.from_pretrained(snap).optimize_for_inference()
        cfg = EvalConfig(episodes=args.episodes, seed=100000, n_envs=args.episodes, progress=False)
        with api.torch_threads(args.threads):
            result = evaluate(policy, task, cfg)
        step = int(snap.name.split("_")[1])
        point = {
            "steps": step,
            "train_minutes": round(minutes * step / total, 1),
            "mean_score": result.get("mean_score"),
            "success_rate": result.get("success_rate"),
        }
        curve.append(point)
        print(point, flush=True)
    return curve


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "| encoder | denoiser | images/s (1 thread) | images/s (2 threads) | ms/chunk (batch 1, 1 thread, NFE 3) |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        d = r.get("denoiser", "mlp")
        print(
            f"| {r['encoder']} | {d} | {r['images_per_s_1t']} | {r['images_per_s_2t']} | {r['latency_ms']} |"
        )


def main(args: Args) -> None:
    result: dict[str, Any] = read_json(args.out) if args.out.is_file() else {}
    if args.train_minutes > 0:
        run = {
            "encoder": args.encoder,
            "denoiser": args.denoiser,
            "threads": args.threads,
            "train_minutes": args.train_minutes,
            "episodes": args.episodes,
            "curve": train_curve(args),
            "provenance": provenance("pusht-image"),
        }
        same = (args.encoder, args.denoiser)
        kept = [r for r in result.get("training_runs", []) if (r["encoder"], r["denoiser"]) != same]
        result["training_runs"] = [*kept, run]
    else:
        rows = speed_rows(args)
        print_table(rows)
        run = {
            "rows": rows,
            "load_average": list(os.getloadavg()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        result.setdefault("speed_runs", []).append(run)  # every run kept: on a shared machine they vary
    result["provenance"] = provenance("pusht-image")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(tyro.cli(Args))
