"""Offline evaluation on real-robot data (the SO-101 LeRobot recording, no simulator).

Trains the default score policy on so101_record_test with nothing but --data (format and dims from
the data; 3 of the 4 episodes for training, 1 held out by the seed-42 split), and, when the policy
family is available, an MSE-trained policy of the same size on the same backbone ('mse-bc'). Then
scores the executed part of each sampled chunk against the recorded actions of the held-out episode,
next to the mean-action baseline. Prints the table, writes benchmarks/results/so101_offline.json.

    python benchmarks/so101_offline.py
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tyro

from scorepolicy import api
from scorepolicy.api.offline_eval import format_offline, offline_evaluate
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import atomic_write_json
from scorepolicy.policies import PolicyConfig
from scorepolicy.training import TrainConfig

RESULTS = Path(__file__).parent / "results"
SO101 = Path(__file__).resolve().parents[2] / "shared" / "data" / "so101_record_test"


@dataclass
class Args:
    """SO-101 offline benchmark options."""

    data: Path = SO101
    """The SO-101 LeRobot v3.0 recording."""
    runs: Path = Path("runs/bench_so101")
    """Folder for the two training runs (replaced on each invocation)."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    training: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            steps=1500, warmup_steps=100, checkpoint_every=1500, val_every=500, num_threads=1, progress=False
        )
    )
    seed: int = 0
    """Seed of the sampling noise in the offline evaluation."""
    out: Path = RESULTS / "so101_offline.json"
    """Result JSON."""


def train_run(args: Args, kind: str) -> tuple[Path, float]:
    """Train one policy family on the data (only --data given, as a user would); returns its run dir and minutes."""
    out = args.runs / kind
    shutil.rmtree(out, ignore_errors=True)
    policy = dataclasses.replace(args.policy, kind=kind)  # type: ignore[call-arg]
    job = api.TrainJob(data=args.data, out=out, policy=policy, train=dataclasses.replace(args.training))
    t0 = time.perf_counter()
    api.run_training(job)
    return out, (time.perf_counter() - t0) / 60


def main(args: Args) -> None:
    if not args.data.exists():
        raise SystemExit(f"{args.data}: not found (the shared SO-101 recording)")
    minutes: dict[str, Any] = {}
    score_run, minutes["score"] = train_run(args, "score")
    baselines, note = [], None
    try:
        mse_run, minutes["mse-bc"] = train_run(args, "mse-bc")
        baselines.append(mse_run)
    except ScorePolicyError as exc:  # the MSE-BC family is not registered in this checkout
        note = f"MSE-trained baseline not run: {exc}"
        print(note)
    result = offline_evaluate(score_run, args.data, baselines=baselines, seed=args.seed)
    print(format_offline(result))
    result.update(
        train_minutes=minutes,
        steps=args.training.steps,
        threads=args.training.num_threads,
        note=note,
    )
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(tyro.cli(Args))
