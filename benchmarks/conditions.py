"""How much each perturbation condition hurts a trained policy: success and score per condition.

Evaluates one run under nominal, obs-noise, block-shift and unseen-start (the task's default scales,
`scorepolicy.envs.conditions`) on the same env seeds, with Barnard's exact test of each condition's
success against nominal's. Prints a markdown table and writes benchmarks/results/conditions_<task>.json.

    python benchmarks/conditions.py --run /work/runs/pusht --nfe 3           # seeds 100000..100049
    python benchmarks/conditions.py --run runs/demo --episodes 100            # obstacle task, seeds 0..99
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from scorepolicy import api
from scorepolicy.core.task import CONDITION_NAMES, Condition
from scorepolicy.evaluation import EvalConfig
from scorepolicy.evaluation.stats import barnard_pvalue
from scorepolicy.files import atomic_write_json
from scorepolicy.provenance import provenance

RESULTS = Path(__file__).parent / "results"
KEYS = ("success_rate", "success_ci", "mean_score", "mean_length", "condition", "nfe", "sampler")


@dataclass
class Args:
    """Conditions benchmark options."""

    run: Path = Path("/work/runs/pusht")
    """Run directory of the trained policy."""
    episodes: int = 50
    """Episodes per condition (env seeds seed .. seed+episodes-1, the same for every condition)."""
    seed: int | None = None
    """First env seed (default: the task's, 100000 for Push-T)."""
    nfe: int | None = None
    """Denoiser evaluations per chunk (default: the run's config)."""
    conditions: tuple[str, ...] = CONDITION_NAMES
    """Conditions to evaluate (nominal first: the others are tested against it)."""
    threads: int = 1
    """torch threads."""
    out: Path | None = None
    """Result JSON (default: benchmarks/results/conditions_<task>.json)."""


def run_condition(args: Args, name: str) -> dict[str, Any]:
    """Evaluate the run under one condition; the summary keys of the result plus its wall time."""
    cfg = EvalConfig(episodes=args.episodes, seed=args.seed, n_envs=min(args.episodes, 50))
    t0 = time.perf_counter()
    with api.torch_threads(args.threads):
        result = api.evaluate_run(args.run, cfg, nfe=args.nfe, condition=Condition(name))
    row = {k: result.get(k) for k in KEYS}
    row.update(successes=round(result["success_rate"] * result["n_episodes"]), n=result["n_episodes"])
    row.update(seeds=result["seeds"], seconds=round(time.perf_counter() - t0, 1))
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the rows."""
    lines = [
        "| condition | success (95% Wilson) | mean score | mean length | Barnard p vs nominal |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["condition"]
        name = " ".join([c["name"], *(f"{k}={v:g}" for k, v in c.items() if k != "name")])
        lo, hi = r["success_ci"]
        p, score = r.get("p_vs_nominal"), r.get("mean_score")
        lines.append(
            f"| {name} | {r['success_rate']:.0%} ({lo:.0%}-{hi:.0%}) | "
            f"{'-' if score is None else f'{score:.3f}'} | {r['mean_length']:.0f} | "
            f"{'-' if p is None else f'{p:.2g}'} |"
        )
    return "\n".join(lines)


def main(args: Args) -> None:
    """Run every condition, compare with nominal, print and write the results."""
    rows = [run_condition(args, name) for name in args.conditions]
    nominal = next((r for r in rows if r["condition"]["name"] == "nominal"), None)
    for r in rows:
        if nominal is not None and r is not nominal:
            r["p_vs_nominal"] = barnard_pvalue(r["successes"], r["n"], nominal["successes"], nominal["n"])
    task = api.run_task_name(args.run)
    out = args.out or RESULTS / f"conditions_{task}.json"
    atomic_write_json(out, {"run": str(args.run), "task": task, "rows": rows, "provenance": provenance(task)})
    print(table(rows))
    print(f"results: {out}")


if __name__ == "__main__":
    main(tyro.cli(Args))
