"""RL improvement benchmark (issue 12): a trained base vs its DSRL-, residual- and best-of-K-improved versions.

For each method: `api.improve` on the base run (curve points on validation seeds, env-step and
wall-clock budgets), then every policy — the base and each improved one — on the same test episodes
(Push-T: seeds 100000.., NFE 3): success with its Wilson 95% interval, mean score, behaviour entropy
where the task has behaviours (does RL collapse the modes?), Barnard's exact test of each improved
policy against the base, latency per chunk (batch 1, one thread, median over 200 chunks of the select_action calls of one chunk) and the wall
time of the improvement. Prints a table, writes benchmarks/results/improve.json and improve.png
(`--name` changes the file stem). The obstacle task (success and route entropy before/after, route
histograms) has its own script, benchmarks/improve_obstacles.py.

    python benchmarks/improve.py --base /work/runs/pusht --minutes 25
"""

from __future__ import annotations

import csv
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro

from scorepolicy import api
from scorepolicy.envs.registry import get_task
from scorepolicy.evaluation import EvalConfig
from scorepolicy.evaluation.evaluate import evaluate
from scorepolicy.evaluation.stats import barnard_pvalue
from scorepolicy.files import atomic_write_json, read_json
from scorepolicy.provenance import provenance
from scorepolicy.rl.best_of_k_config import BestOfKConfig
from scorepolicy.rl.dsrl_config import DSRLConfig
from scorepolicy.rl.residual import ResidualConfig

RESULTS = Path(__file__).parent / "results"
REPORT_KEYS = (
    "success_rate",
    "success_ci",
    "mean_score",
    "behaviour_entropy",
    "n_behaviours_seen",
    "mean_length",
)


@dataclass
class Args:
    """Improvement benchmark options."""

    base: Path = Path("/work/runs/pusht")
    """Run directory of the trained base (read only: it is copied into each improved run)."""
    methods: tuple[str, ...] = ("dsrl", "residual", "best-of-k")
    """Methods to run (a method not available in this version is reported as skipped)."""
    work: Path = Path("runs/bench_improve")
    """Where the improved runs are written (one sub-directory per method)."""
    minutes: float = 25.0
    """Wall-clock budget of each method's training."""
    env_steps: int = 1_000_000
    """Env-step budget of each method's training."""
    eval_every: int = 20_000
    """Env steps between curve points."""
    eval_episodes: int = 50
    """Episodes per curve point (validation seeds from --eval-seed)."""
    eval_seed: int = 0
    """First validation seed of the curve."""
    n_envs: int = 8
    """Training envs per wave."""
    test_episodes: int = 100
    """Final test episodes per policy."""
    test_seed: int | None = None
    """First test seed (default: the task's, 100000 for Push-T)."""
    nfe: int = 3
    """Denoiser calls per chunk of the base, in training and testing."""
    reward: str | None = None
    """Reward kind (default: the task's)."""
    dsrl: DSRLConfig = field(default_factory=DSRLConfig)
    """DSRL settings."""
    residual: ResidualConfig = field(default_factory=ResidualConfig)
    """Residual RL settings."""
    best_of_k: BestOfKConfig = field(default_factory=BestOfKConfig)
    """Best-of-K settings."""
    residual_env_steps: int | None = None
    """Env-step budget of the residual method (default: --env-steps)."""
    resume: bool = False
    """Resume interrupted improvement runs in --work."""
    train: bool = True
    """Improve first (False: test the improved runs already in --work, with their curve.csv)."""
    name: str = "improve"
    """Stem of the result files in benchmarks/results."""
    k_sweep: tuple[int, ...] = ()
    """Also test every best-of-K run with these numbers of candidates K (its critic unchanged): success and
    latency per K, the trade-off between the two."""
    extra: tuple[str, ...] = ()
    """Further improved runs to test beside the methods, as NAME=RUN_DIR (not trained here; e.g. a
    best-of-K run resumed with `--best-of-k.acting actor`)."""


def run_method(args: Args, method: str) -> dict[str, Any]:
    """Improve the base with one method; returns its run dir, curve and wall time."""
    out = args.work / method
    if not args.train:
        return existing_run(out)
    job = api.ImproveJob(
        run=args.base,
        method=method,  # type: ignore[arg-type]
        env_steps=(args.residual_env_steps or args.env_steps) if method == "residual" else args.env_steps,
        out=out,
        resume=args.resume,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        eval_seed=args.eval_seed,
        n_envs=args.n_envs,
        reward=args.reward,  # type: ignore[arg-type]
        nfe=args.nfe,
        max_minutes=args.minutes,
        progress=False,
        dsrl=args.dsrl,
        residual=args.residual,
        best_of_k=args.best_of_k,
    )
    t0 = time.monotonic()
    result = api.improve(job)
    wall = (time.monotonic() - t0) / 60
    return {"run": str(out), "curve": result["curve"], "wall_minutes": wall, **run_record(out)}


def existing_run(out: Path) -> dict[str, Any]:
    """An improved run already on disk: its curve (curve.csv), wall time and record."""
    if not (out / "model.safetensors").is_file():
        raise FileNotFoundError(f"{out}: no improved run")
    with open(out / "curve.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        "run": str(out),
        "curve": rows,
        "wall_minutes": float(rows[-1]["wall_time_s"]) / 60,
        **run_record(out),
    }


def run_record(out: Path) -> dict[str, Any]:
    """What an improved run says of itself: its settings (with their provenance, when recorded) and the
    env steps of its last resumable checkpoint (a run stopped early is tested at that checkpoint)."""
    state = out / "rl_state" / "state.json"
    progress = read_json(state).get("progress", {}) if state.is_file() else {}
    return {
        "improve_config": read_json(out / "improve_config.json"),
        "checkpoint_env_steps": progress.get("env_steps"),
    }


def protocol(args: Args, methods: dict[str, Any]) -> str:
    """The protocol in words, computed from the settings and from what each improved run recorded."""
    parts = [
        f"test: {args.test_episodes} episodes from seed {args.test_seed or 'the task default'} at NFE {args.nfe}"
    ]
    for name, info in methods.items():
        if "run" not in info:
            continue
        cfg, last = info["improve_config"], info["curve"][-1]
        parts.append(
            f"{name}: curve on {cfg['eval_episodes']} validation episodes from seed {cfg['eval_seed']} every "
            f"{cfg['eval_every']} env steps, {int(float(last['env_step']))} env steps in {info['wall_minutes']:.1f} min "
            f"(budget {cfg['env_steps']} env steps, {cfg['max_minutes']} min; {cfg['n_envs']} training envs "
            f"from seed {cfg['train_seed']}, reward '{cfg['reward']}')"
        )
    return "; ".join(parts)


def test_policy(args: Args, run: Path) -> dict[str, Any]:
    """The test episodes and latency of one run."""
    cfg = EvalConfig(episodes=args.test_episodes, seed=args.test_seed, n_envs=50, progress=False)
    result = api.evaluate_run(run, cfg, nfe=args.nfe)
    row = {k: result[k] for k in REPORT_KEYS if k in result}
    successes = sum(int(e.get("success", 0)) for e in result["episodes"])
    return {
        **row,
        "successes": successes,
        "n_episodes": result["n_episodes"],
    }


def with_candidates(run: Path, k: int, nfe: int) -> Any:
    """A best-of-K run's policy with K candidates per decision instead of its own."""
    policy = api.load_policy(run, nfe=nfe)
    policy.bok = dataclasses.replace(policy.bok, candidates=k)
    return policy


def k_sweep(args: Args, tests: dict[str, Any], runs: dict[str, Path]) -> dict[str, Path]:
    """Test each best-of-K run at every K of --k-sweep on the test episodes (rows NAME@K in `tests`);
    returns the variants' runs for the latency timing (NAME@K -> run)."""
    variants: dict[str, Path] = {}
    for name, run in runs.items():
        if name == "base" or read_json(run / "config.json").get("kind") != "best-of-k":
            continue
        for k in args.k_sweep:
            task = get_task(api.run_task_name(run))
            cfg = EvalConfig(episodes=args.test_episodes, seed=args.test_seed, n_envs=50, progress=False)
            result = evaluate(with_candidates(run, k, args.nfe), task, cfg)
            row = {key: result[key] for key in REPORT_KEYS if key in result}
            row["successes"] = sum(int(e.get("success", 0)) for e in result["episodes"])
            tests[f"{name}@{k}"] = {**row, "n_episodes": result["n_episodes"], "candidates": k}
            variants[f"{name}@{k}"] = run
    return variants


def chunk_latencies(runs: dict[str, Path], nfe: int, repeats: int = 200) -> dict[str, tuple[float, int]]:
    """(median ms per chunk, actions per chunk) of each run at batch 1 on one thread: the n_action_steps
    `select_action` calls
    of one chunk (the base's chunk plus whatever the improved policy adds per chunk or per step), on a
    real first observation of the task. The policies are timed in turns (one chunk each per round), so
    that a changing machine load affects them alike."""
    torch.set_num_threads(1)
    policies = {
        name: with_candidates(run, int(name.rsplit("@", 1)[1]), nfe)
        if "@" in name
        else api.load_policy(run, nfe=nfe)
        for name, run in runs.items()
    }
    obs, _ = get_task(api.run_task_name(next(iter(runs.values())))).make_env(None).reset(seed=0)
    obs = np.asarray(obs, dtype=np.float32)[None]
    times: dict[str, list[float]] = {name: [] for name in policies}
    for i in range(repeats + 20):
        for name, policy in policies.items():
            policy.reset(seed=i)
            t0 = time.perf_counter()
            for _ in range(policy.cfg.n_action_steps):
                policy.select_action(obs)
            if i >= 20:
                times[name].append((time.perf_counter() - t0) * 1000)
    return {name: (float(np.median(t)), policies[name].cfg.n_action_steps) for name, t in times.items()}


def main(args: Args) -> dict[str, Any]:
    """Run the benchmark; returns (and writes) the result dict."""
    methods: dict[str, Any] = {}
    for method in args.methods:
        try:
            methods[method] = run_method(args, method)
        except Exception as e:  # a method missing from this version, or failing: reported, not fatal
            methods[method] = {"skipped": f"{type(e).__name__}: {e}"}
            print(f"{method}: skipped ({e})")
    for item in args.extra:
        name, _, run = item.partition("=")
        methods[name] = existing_run(Path(run))
    tests = {"base": test_policy(args, args.base)}
    for method, info in methods.items():
        if "run" in info:
            tests[method] = test_policy(args, Path(info["run"]))
    runs = {"base": args.base, **{m: Path(info["run"]) for m, info in methods.items() if "run" in info}}
    runs.update(k_sweep(args, tests, runs))
    for name, (ms, n_actions) in chunk_latencies(runs, args.nfe).items():
        tests[name]["latency_ms"] = ms
        tests[name]["latency_ms_per_action"] = ms / n_actions  # chunks of different lengths compared fairly
    base = tests["base"]
    for name, row in tests.items():
        if name != "base":
            row["barnard_p_vs_base"] = barnard_pvalue(
                row["successes"], row["n_episodes"], base["successes"], base["n_episodes"]
            )
    summary = {
        "base": str(args.base),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(args).items()},
        "methods": methods,
        "test": tests,
        "protocol": protocol(args, methods),
        "provenance": provenance(api.run_task_name(args.base)),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / f"{args.name}.json", summary)
    plot(summary, RESULTS / f"{args.name}.png")
    print(table(tests, methods))
    return summary


def table(tests: dict[str, Any], methods: dict[str, Any]) -> str:
    """The result table as text (behaviour entropy where the task has behaviours)."""
    head = (
        f"{'policy':10} {'success':>8} {'95% CI':>15} {'score':>7} {'entropy':>8} {'p vs base':>10} "
        f"{'ms/chunk':>9} {'ms/action':>9} {'minutes':>8}"
    )
    lines = [head]
    for name, row in tests.items():
        lo, hi = row["success_ci"]
        score = f"{row['mean_score']:.3f}" if "mean_score" in row else "-"
        entropy = f"{row['behaviour_entropy']:.3f}" if row.get("behaviour_entropy") is not None else "-"
        p = f"{row['barnard_p_vs_base']:.3g}" if "barnard_p_vs_base" in row else "-"
        minutes = f"{methods[name]['wall_minutes']:.1f}" if name in methods else "-"
        ci = f"[{lo:.2f}, {hi:.2f}]"
        lines.append(
            f"{name:10} {row['success_rate']:8.3f} {ci:>15} {score:>7} {entropy:>8} {p:>10} {row['latency_ms']:9.3f} "
            f"{row['latency_ms_per_action']:9.3f} {minutes:>8}"
        )
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    """Curves: success (Wilson band) and mean score against env steps, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for method, info in summary["methods"].items():
        rows = info.get("curve") or []
        if not rows:
            continue
        x = [int(r["env_step"]) for r in rows]
        ax1.plot(x, [float(r["success_rate"]) for r in rows], marker="o", label=method)
        ax1.fill_between(
            x, [float(r["success_lo"]) for r in rows], [float(r["success_hi"]) for r in rows], alpha=0.2
        )
        if rows[0].get("mean_score"):
            ax2.plot(x, [float(r["mean_score"]) for r in rows], marker="o", label=method)
    ax1.set(xlabel="env steps", ylabel="success (validation seeds, 95% Wilson)", ylim=(0, 1))
    ax2.set(xlabel="env steps", ylabel="mean score (validation seeds)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"RL improvement of {summary['base']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(tyro.cli(Args))
