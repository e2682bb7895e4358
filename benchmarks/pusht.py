"""Push-T benchmark under the Diffusion Policy low-dim protocol, with our state observation or DP's own.

`--protocol state` (default) trains the `pusht` task's recipe (agent + block pose); `--protocol dp` trains
the `pusht-keypoints` task's recipe (DP's observation: 9 block keypoints + the agent, and the settled longer
schedule), exactly what `scorepolicy train --task pusht-keypoints` runs. Both train on 90 training episodes
of the shared Push-T demonstrations (seed-42 split) and choose among the kept snapshots by 100 rollouts on
validation seeds 0..99. The chosen one is evaluated on the evaluation seeds (100000.., 300 steps; 50
episodes for state, 100 for dp) at NFE 1, 2, 3, 5, 10 and 20: mean score with its 95% interval, mean max
coverage, success with its Wilson 95% interval, and latency per action chunk (batch 1, one thread, best of
three medians of 300 calls, timed after all rollouts). Every kept snapshot is also evaluated on the
evaluation seeds: their mean is the analogue of DP's "average of the last 10 checkpoints". `--protocol dp`
prints the result beside Diffusion Policy's reported figures, with the CPU minutes spent. Writes
benchmarks/results/pusht.json (state) or pusht_dp.json (dp) and a plot beside it.

    python benchmarks/pusht.py --data ../shared/data/pusht_cchi_v7_replay.zarr
    python benchmarks/pusht.py --protocol dp --data ../shared/data/pusht_cchi_v7_replay.zarr
    python benchmarks/pusht.py --protocol dp --run runs/pusht-kp --no-train   # an existing run
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tyro

from pusht_ablation import logged_minutes, score_interval, training_cost
from scorepolicy import api
from scorepolicy.api.jobs import recipe_job
from scorepolicy.envs.registry import get_task
from scorepolicy.evaluation import EvalConfig
from scorepolicy.files import atomic_write_json, read_json, to_dict
from scorepolicy.policies import ChunkPolicy, PolicyConfig, ScorePolicy
from scorepolicy.provenance import provenance

RESULTS = Path(__file__).parent / "results"


PROTOCOL_TASKS = {"state": "pusht", "dp": "pusht-keypoints"}

DP_REPORTED = [
    ("DP-C (conv U-Net)", 0.95, 0.91, "100"),
    ("DP-T (transformer)", 0.95, 0.79, "100"),
    ("IBC", 0.90, 0.84, "-"),
    ("BET", 0.79, 0.70, "-"),
    ("LSTM-GMM", 0.67, 0.61, "-"),
]
"""Diffusion Policy (IJRR version), Table 1, Push-T state: mean score, max over checkpoints / average of the
last 10 checkpoints, 3 training seeds x 50 initial states, trained on a GPU (DP: ~200 k gradient steps);
the last field is the denoising steps per chunk (DP's DDPM: 100; the others do not denoise)."""


@dataclass
class Args:
    """Push-T benchmark options."""

    data: Path = api.DEFAULT_PUSHT_ZARR
    """The Push-T replay zarr."""
    protocol: Literal["state", "dp"] = "state"
    """state: the `pusht` task (agent + block pose); dp: `pusht-keypoints` (DP's keypoint observation), each
    trained with its task's recipe."""
    run: Path | None = None
    """Run directory of the trained policy (default runs/bench_pusht or runs/bench_pusht_dp)."""
    train: bool = True
    """Train first (False: evaluate an existing run)."""
    resume: bool = False
    """Resume an interrupted benchmark training run."""
    nfe: tuple[int, ...] = (1, 2, 3, 5, 10, 20)
    """NFE values to evaluate."""
    episodes: int | None = None
    """Evaluation episodes per NFE (default 50 for state, 100 for dp)."""
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
    threads: int = 1
    """torch threads of the training process."""
    out: Path | None = None
    """Result JSON (default benchmarks/results/pusht.json or pusht_dp.json; the plot goes beside it)."""

    @property
    def task(self) -> str:
        """The task the protocol trains and evaluates."""
        return PROTOCOL_TASKS[self.protocol]

    @property
    def _suffix(self) -> str:
        return "" if self.protocol == "state" else f"_{self.protocol}"

    @property
    def run_dir(self) -> Path:
        """--run, or the protocol's default run directory."""
        return self.run or Path(f"runs/bench_pusht{self._suffix}")

    @property
    def out_path(self) -> Path:
        """--out, or the protocol's default result JSON."""
        return self.out or RESULTS / f"pusht{self._suffix}.json"

    @property
    def n_episodes(self) -> int:
        """--episodes, or the protocol's default (50 for state, 100 for dp)."""
        return self.episodes or (50 if self.protocol == "state" else 100)


def train_policy(args: Args, run: Path) -> float:
    """Train the task's recipe on the seed-42 split (the DP low-dim protocol caps it at 90 episodes);
    returns minutes."""
    job = recipe_job(args.task)
    job.data, job.out, job.resume = args.data, run, args.resume
    job.dataset.max_train_episodes = args.max_train_episodes
    job.train.num_threads = args.threads
    t0 = time.perf_counter()
    api.run_training(job)
    return (time.perf_counter() - t0) / 60


def evaluate_nfe(run: Path, nfe: int, args: Args) -> dict[str, Any]:
    """One NFE: rollouts over the evaluation seeds, with a 95% interval on the mean score."""
    cfg = EvalConfig(episodes=args.n_episodes, seed=args.seed, progress=False)
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
    return {
        "nfe": nfe,
        **{k: result.get(k) for k in keys},
        "score_ci": score_interval([e["score"] for e in result["episodes"] if "score" in e]),
        "max_steps": cfg.max_steps or get_task(args.task).max_steps,
    }


def best_latency(policy: ChunkPolicy, rounds: int = 3) -> dict[str, Any]:
    """Batch-1, one-thread latency: the lowest of `rounds` medians (this VM's timings are noisy)."""
    runs = [api.measure_latency(policy, batch=1, threads=1, repeats=300) for _ in range(rounds)]
    best = min(runs, key=lambda r: r["ms_per_chunk"])
    return {**best, "round_medians_ms": [r["ms_per_chunk"] for r in runs]}


def transformer_latency(policy_cfg: PolicyConfig, nfe: int) -> dict[str, Any]:
    """Latency of the transformer denoiser at the same sizes (weights do not change the cost)."""
    cfg = dataclasses.replace(policy_cfg, denoiser="transformer")
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


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
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
    a.set(xscale="log", xlabel="NFE", ylim=(0, 1.02), title=title)
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
    obs = "keypoints (DP's observation)" if meta.get("task") == "pusht-keypoints" else "state"
    return f"Push-T {obs}: {data}, seed-{split['split_seed']} split; env seeds {first}..{last}, {steps} steps"


def evaluate_kept_snapshots(run: Path, args: Args, policy: ScorePolicy) -> list[dict[str, Any]]:
    """Every kept snapshot on the evaluation seeds, each sampled exactly like the final model."""
    cfg = EvalConfig(episodes=args.n_episodes, seed=args.seed)
    ssm = policy.cfg.diffusion.sample_sigma_max
    rows = api.evaluate_snapshots(run, cfg, task=args.task, sample_sigma_max=ssm)
    out = [
        {k: r[k] for k in ("snapshot", "mean_score", "success_rate", "success_ci")}
        for r in rows
        if "skipped" not in r
    ]
    for r in out:
        print(f"{r['snapshot']}: score {r['mean_score']:.3f}, success {r['success_rate']:.2f}")
    return out


def print_beside_dp(result: dict[str, Any]) -> None:
    """Our NFE-3 row (chosen on validation seeds / mean of the kept snapshots) under DP's reported rows."""
    print(f"\n{'Push-T state protocol':<34} {'best':>6} {'avg':>6} {'success':>8} {'NFE':>6} {'compute':>22}")
    for name, best, avg, nfe in DP_REPORTED:
        print(f"{name + ' (reported)':<34} {best:>6.2f} {avg:>6.2f} {'-':>8} {nfe:>6} {'GPU':>22}")
    row = next((r for r in result["nfe_sweep"] if r["nfe"] == 3), result["nfe_sweep"][0])
    avg = result["snapshot_mean_score"]
    avg_txt = f"{avg:>6.3f}" if avg is not None else f"{'-':>6}"
    cpu = result["cpu_minutes"]
    compute = f"{cpu:.0f} CPU-min" if cpu is not None else "?"
    print(
        f"{'ours, ' + result['policy']['denoiser'] + ', NFE ' + str(row['nfe']):<34} {row['mean_score']:>6.3f} "
        f"{avg_txt} {row['success_rate']:>8.2f} {row['nfe']:>6} {compute:>22}"
    )
    print(
        "ours: best = the snapshot chosen on validation seeds, on the evaluation seeds; avg = mean over kept snapshots"
    )


def main(args: Args) -> None:
    run = args.run_dir
    minutes = train_policy(args, run) if args.train else logged_minutes(run)
    selection, chosen = None, run
    if args.select:
        val = EvalConfig(episodes=args.val_episodes, seed=args.val_seed, progress=False)
        selection, chosen = api.select_snapshot(run, val), run / "best"
        print(f"chosen on validation seeds: {selection['best']}")
    rows = [evaluate_nfe(chosen, n, args) for n in args.nfe]
    for row in rows:  # timed after all rollouts, so that no evaluation shares the machine
        lat = best_latency(api.load_policy(chosen, row["nfe"]))
        row.update(ms_per_chunk=lat["ms_per_chunk"], latency_round_medians_ms=lat["round_medians_ms"])
    print_table(rows)
    policy = ScorePolicy.from_pretrained(run)
    snapshots = evaluate_kept_snapshots(run, args, policy) if args.snapshots else []
    tf = transformer_latency(policy.cfg, policy.cfg.diffusion.nfe)
    print(f"transformer denoiser latency at NFE {tf['nfe']}: {tf['ms_per_chunk']:.3f} ms per chunk")
    meta = read_json(run / "train_config.json")
    result = {
        "protocol": protocol(run, rows),
        "task": args.task,
        "train_minutes": minutes,
        "cpu_minutes": training_cost(run)["cpu_minutes"],
        "policy": to_dict(policy.cfg),
        "train": meta["train"],
        "evaluated": str(chosen),
        "selection_on_validation_seeds": selection,
        "nfe_sweep": rows,
        "snapshots_at_default_nfe": snapshots,
        "snapshot_mean_score": float(np.mean([r["mean_score"] for r in snapshots])) if snapshots else None,
        "snapshot_mean_success": float(np.mean([r["success_rate"] for r in snapshots]))
        if snapshots
        else None,
        "dp_reported": [{"method": m, "best": b, "avg_last_10": a, "nfe": n} for m, b, a, n in DP_REPORTED],
        "transformer_latency": tf,
        "provenance": provenance(args.task),
    }
    if args.protocol == "dp":
        print_beside_dp(result)
    out = args.out_path
    atomic_write_json(out, result)
    plot(rows, out.with_suffix(".png"), f"{result['protocol'].split(':')[0]}, {args.n_episodes} episodes")
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main(tyro.cli(Args))
