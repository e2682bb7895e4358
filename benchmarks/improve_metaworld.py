"""Best-of-K on one Meta-World MT10 task (issue 12: the multi-task model's weakest task, peg-insert-side, to
≥ 90% with the goal-conditioned base frozen): the base vs its improved run on the same test episodes.

The improved run comes from `scorepolicy improve BASE --method best-of-k --subtask peg-insert-side ...`
(see its improve_config.json: reward, budgets, seeds). Both policies are tested on that subtask alone
(`envs.subtasks`: test seed s is MT10 seed 10·s + 7 for peg-insert-side) at the same NFE and guidance:
success with its Wilson 95% interval, Barnard's exact test of improved vs base, latency per chunk at
batch 1 on one thread (`api.measure_latency`, median over 200 chunks; the best-of-K chunk includes its
K candidates and the critic), plus what the run recorded: env steps, minutes, its validation curve.
Test seeds must not overlap the run's validation or training seeds (checked). Prints a table, writes
benchmarks/results/improve_metaworld.json.

    python benchmarks/improve_metaworld.py --base runs/mt10 --improved runs/mt10-peg-bok
    python benchmarks/improve_metaworld.py ... --base-json b.json --improved-json i.json   # reuse evals
"""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from scorepolicy import api
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig
from scorepolicy.evaluation.stats import barnard_pvalue
from scorepolicy.files import atomic_write_json, read_json
from scorepolicy.provenance import provenance

RESULTS = Path(__file__).parent / "results"
KEYS = ("success_rate", "success_ci", "n_episodes", "seeds", "nfe", "sampler", "guidance", "subtask")


@dataclass
class Args:
    """Meta-World best-of-K benchmark options."""

    base: Path
    """The MT10 base run (scorepolicy train --task metaworld-mt10)."""
    improved: Path
    """The improved run (scorepolicy improve BASE --method best-of-k --subtask ...)."""
    test_episodes: int = 200
    """Test episodes per policy (of the subtask only)."""
    test_seed: int = 1000
    """First test seed of the subtask (MT10 seed 10·s + index)."""
    nfe: int = 3
    """Denoiser calls per chunk (both policies)."""
    guidance: float | None = None
    """Guidance λ of both (default: the improved run's, i.e. what its base sampled with in training)."""
    base_json: Path | None = None
    """Reuse this `scorepolicy eval` result of the base (checked: same subtask, seeds, NFE, guidance)."""
    improved_json: Path | None = None
    """Reuse this `scorepolicy eval` result of the improved run (checked likewise)."""
    latency_repeats: int = 200
    """Timed chunks per policy."""
    out: Path = RESULTS / "improve_metaworld.json"
    """Result JSON."""


def check_seeds(args: Args, record: dict[str, Any]) -> None:
    """The test seeds are disjoint from the run's validation and training seeds (one-line error)."""
    lo, hi = args.test_seed, args.test_seed + args.test_episodes
    ranges = {
        "validation": (record["eval_seed"], record["eval_seed"] + record["eval_episodes"]),
        "training": (record["train_seed"], record["train_seed"] + record["env_steps"]),
    }
    for name, (a, b) in ranges.items():
        if lo < b and a < hi:
            raise ScorePolicyError(f"--test-seed {lo}..{hi - 1} overlaps the run's {name} seeds {a}..{b - 1}")


def test(args: Args, run: Path, subtask: str, guidance: float | None, reuse: Path | None) -> dict[str, Any]:
    """The test result of one run (from `reuse` when given and it matches the protocol)."""
    if reuse is not None:
        result = read_json(reuse)
        seeds = [args.test_seed, args.test_seed + args.test_episodes - 1]
        want = {"seeds": seeds, "nfe": args.nfe, "guidance": guidance}
        got = {k: result.get(k) for k in want}
        if got != want or subtask not in str(result.get("task")):
            raise ScorePolicyError(
                f"{reuse}: made with {got} on {result.get('task')}; this protocol needs {want}"
            )
    else:
        cfg = EvalConfig(episodes=args.test_episodes, seed=args.test_seed, n_envs=50, progress=False)
        result = api.evaluate_run(run, cfg, nfe=args.nfe, guidance=guidance, subtask=subtask)
    row = {k: result[k] for k in KEYS if k in result}
    row["task"] = result["task"]
    row["successes"] = round(sum(float(e.get("success", 0.0)) for e in result["episodes"]))
    row["mean_length"] = result.get("mean_length")
    policy = api.load_policy(run, nfe=args.nfe, guidance=guidance)
    row["latency_ms"] = api.measure_latency(policy, repeats=args.latency_repeats)["ms_per_chunk"]
    row["actions_per_chunk"] = policy.cfg.n_action_steps
    return row


def run_summary(run: Path) -> dict[str, Any]:
    """What the improved run recorded: settings, env steps and minutes of its iterations, its curve."""
    record = read_json(run / "improve_config.json")
    state = read_json(run / "rl_state" / "state.json")
    with open(run / "curve.csv", newline="") as f:
        curve = [{k: float(v) if v else None for k, v in row.items()} for row in csv.DictReader(f)]
    return {
        "improve_config": record,
        "env_steps": state["env_steps"],
        "iterations": state["history"],
        "minutes": curve[-1]["wall_time_s"] / 60.0 if curve and curve[-1]["wall_time_s"] else None,
        "curve": curve,
    }


def main(args: Args) -> dict[str, Any]:
    """Run the benchmark; returns (and writes) the result dict."""
    run = run_summary(args.improved)
    record = run["improve_config"]
    subtask = record.get("subtask")
    if not subtask:
        raise ScorePolicyError(f"{args.improved}: trained without --subtask; this benchmark tests one task")
    check_seeds(args, record)
    guidance = args.guidance if args.guidance is not None else record.get("guidance")
    if guidance is None:
        guidance = api.load_policy(args.improved).cfg.goal.guidance
    tests = {
        "base": test(args, args.base, subtask, guidance, args.base_json),
        "best-of-k": test(args, args.improved, subtask, guidance, args.improved_json),
    }
    base, improved = tests["base"], tests["best-of-k"]
    improved["barnard_p_vs_base"] = barnard_pvalue(
        improved["successes"], improved["n_episodes"], base["successes"], base["n_episodes"]
    )
    summary = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(args).items()},
        "subtask": subtask,
        "reward": record["reward"],
        "test": tests,
        "run": run,
        "provenance": provenance("metaworld-mt10"),
    }
    atomic_write_json(args.out, summary)
    print(table(summary))
    return summary


def table(summary: dict[str, Any]) -> str:
    """The result table and the validation curve as text."""
    run = summary["run"]
    lines = [
        f"{'policy':10} {'success':>8} {'95% CI':>15} {'p vs base':>10} {'ms/chunk':>9} {'env steps':>10} {'min':>6}"
    ]
    for name, row in summary["test"].items():
        lo, hi = row["success_ci"]
        p = f"{row['barnard_p_vs_base']:.3g}" if "barnard_p_vs_base" in row else "-"
        steps, minutes = (f"{run['env_steps']:,}", f"{run['minutes']:.1f}") if name != "base" else ("-", "-")
        ci = f"[{lo:.3f}, {hi:.3f}]"
        lines.append(
            f"{name:10} {row['success_rate']:8.3f} {ci:>15} {p:>10} {row['latency_ms']:9.2f} {steps:>10} {minutes:>6}"
        )
    points = ", ".join(f"{int(p['env_step']):,}: {p['success_rate']:.2f}" for p in run["curve"])
    lines.append(f"validation curve ({summary['subtask']}, success by env step): {points}")
    return "\n".join(lines)


if __name__ == "__main__":
    main(tyro.cli(Args))
