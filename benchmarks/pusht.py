"""Push-T state benchmark under the Diffusion Policy low-dim protocol.

Trains the documented default score policy on 90 training episodes of the shared Push-T demonstrations
(seed-42 split) and chooses among its kept snapshots by 100 rollouts on validation seeds 0..99. The
chosen one is evaluated on 50 episodes (env seeds 100000..100049, 300 steps) at NFE 1, 2, 3, 5, 10 and
20: mean score, mean max coverage, success with its Wilson 95% interval, and latency per action chunk
(batch 1, one thread, best of three medians of 300 calls, timed after all rollouts). Every snapshot is
also evaluated on the evaluation seeds, to show the spread. Prints a table, writes
benchmarks/results/pusht.json and pusht.png.

    python benchmarks/pusht.py --data ../shared/data/pusht_cchi_v7_replay.zarr
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from scorepolicy import api
from scorepolicy.envs.registry import get_task
from scorepolicy.evaluation import EvalConfig
from scorepolicy.files import atomic_write_json, read_json, to_dict
from scorepolicy.policies import ChunkPolicy, PolicyConfig, ScorePolicy
from scorepolicy.provenance import provenance
from scorepolicy.training import TrainConfig

RESULTS = Path(__file__).parent / "results"


@dataclass
class Args:
    """Push-T benchmark options."""

    data: Path = api.DEFAULT_PUSHT_ZARR
    """The Push-T replay zarr."""
    run: Path = Path("runs/bench_pusht")
    """Run directory of the trained policy."""
    train: bool = True
    """Train first (False: evaluate an existing run)."""
    resume: bool = False
    """Resume an interrupted benchmark training run."""
    nfe: tuple[int, ...] = (1, 2, 3, 5, 10, 20)
    """NFE values to evaluate."""
    episodes: int = 50
    """Evaluation episodes per NFE."""
    seed: int = 100_000
    """First evaluation seed."""
    snapshots: bool = True
    """Also evaluate every kept snapshot at the config's NFE on the evaluation seeds (checkpoint spread)."""
    select: bool = True
    """Choose the snapshot to report by rollouts on validation seeds (`scorepolicy select`); else the last."""
    val_episodes: int = 100
    """Validation episodes per snapshot for the choice."""
    val_seed: int = 0
    """First validation seed (apart from the evaluation seeds)."""
    max_train_episodes: int | None = 90
    """Training episodes after the seed-42 split (90: the DP low-dim protocol; None: all 202 of them)."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    training: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps=40_000, checkpoint_every=5_000, num_threads=1)
    )
    out: Path = RESULTS / "pusht.json"
    """Result JSON (the plot goes beside it)."""


def train_policy(args: Args) -> float:
    """Train on the seed-42 split (the DP low-dim protocol caps it at 90 episodes); returns minutes."""
    job = api.TrainJob(task="pusht", data=args.data, out=args.run, resume=args.resume)
    job.dataset = api.DataConfig(val_fraction=0.02, max_train_episodes=args.max_train_episodes, split_seed=42)
    job.policy, job.train = args.policy, args.training
    t0 = time.perf_counter()
    api.run_training(job)
    return (time.perf_counter() - t0) / 60


def logged_train_minutes(run: Path) -> float | None:
    """Training wall-clock recorded in metrics.csv (sum of logging intervals), for runs trained earlier."""
    import csv

    path = run / "metrics.csv"
    if not path.exists():
        return None
    rows = [r for r in csv.DictReader(path.open()) if r["steps_per_s"]]
    steps = [int(r["step"]) for r in rows]
    gaps = [b - a for a, b in zip([0, *steps[:-1]], steps)]
    return sum(g / float(r["steps_per_s"]) for g, r in zip(gaps, rows)) / 60


def evaluate_nfe(run: Path, nfe: int, args: Args) -> dict[str, Any]:
    """One NFE: rollouts over the evaluation seeds, with a 95% interval on the mean score."""
    cfg = EvalConfig(episodes=args.episodes, seed=args.seed, progress=False)
    result = api.evaluate_run(run, cfg, nfe=nfe)
    keys = (
        "success_rate",
        "success_ci",
        "mean_score",
        "mean_max_coverage",
        "mean_length",
        "n_errors",
        "seeds",
    )
    scores = np.array([e["score"] for e in result["episodes"] if "score" in e])
    half = 1.96 * scores.std(ddof=1) / np.sqrt(len(scores))
    score_ci = [float(scores.mean() - half), float(scores.mean() + half)]
    return {
        "nfe": nfe,
        **{k: result.get(k) for k in keys},
        "score_ci": score_ci,
        "max_steps": cfg.max_steps or get_task("pusht").max_steps,
    }


def best_latency(policy: ChunkPolicy, rounds: int = 3) -> dict[str, Any]:
    """Batch-1, one-thread latency: the lowest of `rounds` medians (this VM's timings are noisy)."""
    runs = [api.measure_latency(policy, batch=1, threads=1, repeats=300) for _ in range(rounds)]
    best = min(runs, key=lambda r: r["ms_per_chunk"])
    return {**best, "round_medians_ms": [r["ms_per_chunk"] for r in runs]}


def transformer_latency(policy_cfg: PolicyConfig, nfe: int) -> dict[str, Any]:
    """Latency of the transformer denoiser at the same sizes (weights do not change the cost)."""
    cfg = dataclasses.replace(policy_cfg, denoiser="transformer", obs_dim=6, action_dim=2)
    cfg.diffusion = dataclasses.replace(cfg.diffusion, nfe=nfe)
    return best_latency(ScorePolicy(cfg).optimize_for_inference())


def print_table(rows: list[dict[str, Any]]) -> None:
    """The NFE table."""
    print(
        f"{'NFE':>4} {'score':>6} {'score 95% CI':>15} {'max cov':>8} {'success':>8} {'95% Wilson':>13} {'ms/chunk':>9}"
    )
    for r in rows:
        lo, hi = r["success_ci"]
        slo, shi = r["score_ci"]
        print(
            f"{r['nfe']:>4} {r['mean_score']:>6.3f} {f'[{slo:.3f}, {shi:.3f}]':>15} {r['mean_max_coverage']:>8.3f} "
            f"{r['success_rate']:>8.2f} {f'[{lo:.2f}, {hi:.2f}]':>13} {r['ms_per_chunk']:>9.3f}"
        )


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Score and success vs NFE (with intervals) and latency vs NFE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nfe = [r["nfe"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(nfe, [r["mean_score"] for r in rows], "o-", label="mean score")
    succ = [r["success_rate"] for r in rows]
    err = [
        [s - r["success_ci"][0] for s, r in zip(succ, rows)],
        [r["success_ci"][1] - s for s, r in zip(succ, rows)],
    ]
    a.errorbar(nfe, succ, yerr=err, fmt="s-", capsize=3, label="success (95% Wilson)")
    a.set(xscale="log", xlabel="NFE", ylim=(0, 1.02), title="Push-T state, 50 episodes")
    a.legend()
    b.plot(nfe, [r["ms_per_chunk"] for r in rows], "o-")
    b.set(xscale="log", xlabel="NFE", ylabel="ms per chunk (batch 1, 1 thread)", title="Latency")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def protocol(run: Path, rows: list[dict[str, Any]]) -> str:
    """What was trained on and evaluated, in words computed from the run's train_config.json (its data and
    split) and the evaluated seeds, never from this script's defaults."""
    from scorepolicy.data.windows import split_episodes
    from scorepolicy.data.zarr_replay import read_replay_zarr

    meta = read_json(run / "train_config.json")
    split = meta.get("dataset", {})
    n_total = read_replay_zarr(Path(meta["data"])).n_episodes
    cap = split.get("max_train_episodes")
    train_idx, _ = split_episodes(n_total, split["val_fraction"], split["split_seed"], cap)
    which = " (DP low-dim protocol)" if cap == 90 else ""
    data = f"{len(train_idx)} of {n_total} episodes as training episodes{which}"
    first, last = rows[0]["seeds"]
    steps = rows[0]["max_steps"]
    return f"Push-T state: {data}, seed-{split['split_seed']} split; env seeds {first}..{last}, {steps} steps"


def main(args: Args) -> None:
    minutes = train_policy(args) if args.train else logged_train_minutes(args.run)
    selection, chosen = None, args.run
    if args.select:
        val = EvalConfig(episodes=args.val_episodes, seed=args.val_seed, progress=False)
        selection, chosen = api.select_snapshot(args.run, val), args.run / "best"
        print(f"chosen on validation seeds: {selection['best']}")
    rows = [evaluate_nfe(chosen, n, args) for n in args.nfe]
    for row in rows:  # timed after all rollouts, so that no evaluation shares the machine
        lat = best_latency(api.load_policy(chosen, row["nfe"]))
        row.update(ms_per_chunk=lat["ms_per_chunk"], latency_round_medians_ms=lat["round_medians_ms"])
    print_table(rows)
    policy = ScorePolicy.from_pretrained(args.run)
    snapshots = []
    if args.snapshots:  # each snapshot sampled exactly like the final model
        cfg = EvalConfig(episodes=args.episodes, seed=args.seed)
        ssm = policy.cfg.diffusion.sample_sigma_max
        rows_all = api.evaluate_snapshots(args.run, cfg, task="pusht", sample_sigma_max=ssm)
        snapshots = [
            {k: r[k] for k in ("snapshot", "mean_score", "success_rate", "success_ci")} for r in rows_all
        ]
        for r in snapshots:
            print(f"{r['snapshot']}: score {r['mean_score']:.3f}, success {r['success_rate']:.2f}")
    tf = transformer_latency(policy.cfg, policy.cfg.diffusion.nfe)
    print(f"transformer denoiser latency at NFE {tf['nfe']}: {tf['ms_per_chunk']:.3f} ms per chunk")
    result = {
        "protocol": protocol(args.run, rows),
        "train_minutes": minutes,
        "policy": to_dict(policy.cfg),
        "train": to_dict(args.training),
        "evaluated": str(chosen),
        "selection_on_validation_seeds": selection,
        "nfe_sweep": rows,
        "snapshots_at_default_nfe": snapshots,
        "transformer_latency": tf,
        "provenance": provenance("pusht"),
    }
    atomic_write_json(args.out, result)
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main(tyro.cli(Args))
