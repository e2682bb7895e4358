"""Diversity benchmark (D3IL-style): score policy vs DDPM vs MSE-BC on the same backbone.

For the bundled obstacle task (24 routes) and Push-T (4 approach sides), each policy is evaluated on
held-out seeds: success with its Beta-posterior and Wilson 95% intervals, behaviour entropy (log base
|B|, successful rollouts only), KL to the demonstrations' behaviour distribution, and compact letters
from Bonferroni-corrected Barnard tests. Runs that do not exist yet are trained first (one thread) with
the recipes below. Writes benchmarks/results/diversity.json and the report in
benchmarks/results/diversity_report/.

    python benchmarks/diversity.py                   # both tasks
    python benchmarks/diversity.py --tasks obstacles
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro

from scorepolicy import api
from scorepolicy.envs.obstacles import LAYOUT, generate_obstacle_demos
from scorepolicy.envs.pusht import APPROACH_SIDES, pusht_first_approach
from scorepolicy.evaluation import EvalConfig
from scorepolicy.evaluation.diversity import behaviour_counts, behaviour_kl, successful_labels
from scorepolicy.evaluation.report import compare_results
from scorepolicy.files import atomic_write_json, read_json
from scorepolicy.provenance import provenance, same_code

RESULTS = Path(__file__).parent / "results"
RUNS = Path("runs/bench_diversity")


@dataclass(frozen=True)
class Contender:
    """One row of the benchmark: a run evaluated with given sampling settings."""

    name: str
    """Label in the table."""
    run: Path
    """Run directory."""
    kind: str
    """Policy family ('score', 'ddpm', 'mse-bc')."""
    steps: int
    """Training steps of the recipe (used when the run has to be trained)."""
    nfe: int | None = None
    """Denoiser calls per chunk (None: the run's config)."""
    sampler: str | None = None
    """Sampler override (score policy)."""


OBSTACLE_DEMOS = 1000
STEPS = 30_000
"""One training budget for every policy of a task, so that differences are the method's."""
OBSTACLES = (
    # Sampling of the score policy chosen on validation seeds 0..199 (never the benchmark's seeds),
    # success there: Euler-ancestral NFE 20 97.5%, NFE 10 96.5%, NFE 5 87%; DDIM NFE 10 94%, NFE 3 83%.
    Contender("score (euler-anc., NFE 20)", RUNS / "obstacles_score", "score", STEPS, 20, "euler_ancestral"),
    Contender("score (euler-anc., NFE 10)", RUNS / "obstacles_score", "score", STEPS, 10, "euler_ancestral"),
    Contender("score (DDIM, NFE 3)", RUNS / "obstacles_score", "score", STEPS, 3, "ddim"),
    Contender("score (DDIM, NFE 10)", RUNS / "obstacles_score", "score", STEPS, 10, "ddim"),
    Contender("DDPM (100 steps)", RUNS / "obstacles_ddpm", "ddpm", STEPS),
    Contender("MSE-BC", RUNS / "obstacles_mse-bc", "mse-bc", STEPS),
)
PUSHT = (
    Contender("score (DDIM, NFE 3)", Path("runs/pt_B"), "score", STEPS, 3),
    Contender("DDPM (100 steps)", RUNS / "pusht_ddpm", "ddpm", STEPS),
    Contender("MSE-BC", RUNS / "pusht_mse-bc", "mse-bc", STEPS),
)


@dataclass
class Args:
    """Diversity benchmark options."""

    tasks: tuple[str, ...] = ("obstacles", "pusht")
    """Tasks to (re-)run; results of the others are kept from the existing JSON."""
    obstacle_episodes: int = 480
    """Obstacle rollouts per policy (D3IL's Avoiding protocol: 480)."""
    obstacle_seed: int = 10_000
    """First obstacle evaluation seed (validation used 0..199)."""
    pusht_episodes: int = 200
    """Push-T rollouts per policy (LBM's simulation protocol: 200)."""
    pusht_seed: int = 100_000
    """First Push-T evaluation seed."""
    pusht_data: Path = api.DEFAULT_PUSHT_ZARR
    """Push-T demonstrations (training data of the baselines; behaviour distribution for the KL)."""
    env_workers: int = 2
    """Processes stepping the envs of a wave."""
    evals: Path = RUNS / "evals"
    """Per-policy result JSONs (with trajectories; large, not committed)."""
    out: Path = RESULTS / "diversity.json"
    """Summary JSON."""
    report: Path = RESULTS / "diversity_report"
    """Report directory (report.md, figures, comparison.json)."""


def train_if_missing(c: Contender, task: str, args: Args) -> None:
    """Train the contender's run with its recipe unless it exists (one thread)."""
    if (c.run / "model.safetensors").exists():
        return
    job = api.TrainJob(task=task, out=c.run)
    job.policy.kind = c.kind
    job.train.steps, job.train.checkpoint_every, job.train.num_threads = c.steps, c.steps, 1
    job.train.progress, job.train.tensorboard = False, False
    if task == "obstacles":
        job.dataset = api.DataConfig(n_demos=OBSTACLE_DEMOS)
    else:
        job.data = args.pusht_data
        job.dataset = api.DataConfig(max_train_episodes=90)
    api.run_training(job)


def data_distribution(task: str, args: Args) -> np.ndarray:
    """The demonstrations' behaviour distribution (routes of the generated demos; Push-T approach sides)."""
    if task == "obstacles":
        demos = generate_obstacle_demos(OBSTACLE_DEMOS, seed=0)
        starts = np.r_[0, demos.episode_ends[:-1]]
        labels = [int(demos.data["route"][s]) for s in starts]
        n = LAYOUT.n_routes
    else:
        from scorepolicy.data.zarr_replay import read_replay_zarr

        demos = read_replay_zarr(args.pusht_data)
        starts = np.r_[0, demos.episode_ends[:-1]]
        labels = [pusht_first_approach(demos.data["state"][a:b]) for a, b in zip(starts, demos.episode_ends)]
        n = len(APPROACH_SIDES)
    counts = behaviour_counts(labels, n)
    return counts / counts.sum()


def evaluate_contender(c: Contender, task: str, args: Args, path: Path) -> dict[str, Any]:
    """Evaluate one contender into `path` (skipped if that result already exists)."""
    if path.exists():
        return dict(read_json(path))
    obstacles = task == "obstacles"
    cfg = EvalConfig(
        episodes=args.obstacle_episodes if obstacles else args.pusht_episodes,
        seed=args.obstacle_seed if obstacles else args.pusht_seed,
        n_envs=60 if obstacles else 100,
        env_workers=1 if obstacles else args.env_workers,
        keep_trajectories=True,
        json_path=path,
        video_dir=args.report / "videos" / path.stem if obstacles else None,
        n_videos=1 if obstacles else 0,
        progress=False,
    )
    t0 = time.perf_counter()
    result = api.evaluate_run(c.run, cfg, nfe=c.nfe, sampler=c.sampler, latency=True)
    print(f"  {c.name}: success {result['success_rate']:.3f} in {time.perf_counter() - t0:.0f} s")
    return result


def training_data(meta: dict[str, Any]) -> str:
    """A run's training data in words, from its train_config.json."""
    ds = meta.get("dataset", {})
    if meta.get("data"):
        cap = ds.get("max_train_episodes")
        return f"{meta['data']}" + (f" (at most {cap} training episodes)" if cap else "")
    return f"{ds.get('n_demos')} generated expert demonstrations (seed {ds.get('demo_seed')})"


def run_task(task: str, args: Args) -> dict[str, Any]:
    """Train what is missing, evaluate every contender, compare them; the task's summary."""
    contenders = OBSTACLES if task == "obstacles" else PUSHT
    data_probs = data_distribution(task, args)
    paths, rows = [], []
    for c in contenders:
        train_if_missing(c, task, args)
        slug = (
            c.name.lower()
            .replace(" ", "_")
            .replace(",", "")
            .replace("(", "")
            .replace(")", "")
            .replace(".", "")
        )
        path = args.evals / task / f"{slug}.json"
        result = evaluate_contender(c, task, args, path)
        labels = successful_labels(result["episodes"], "route" if task == "obstacles" else "approach_side")
        meta = read_json(c.run / "train_config.json")
        rows.append(
            {
                "name": c.name,
                "run": str(c.run),
                "kind": c.kind,
                "train_steps": meta["train"]["steps"],
                "data": training_data(meta),
                "kl_to_data": behaviour_kl(labels, data_probs, len(data_probs)),
                **{k: result.get(k) for k in _KEYS},
            }
        )
        paths.append(path)
    cmp = compare_results(paths, args.report / task, names=[c.name for c in contenders])["comparisons"][0]
    for row, cmp_row in zip(rows, cmp["rows"]):
        row["letters"] = cmp_row["letters"]
        row["credible_95"] = cmp_row["credible_95"]
    return {
        "notes": task_notes(task, rows),
        "data_behaviour_distribution": data_probs.tolist(),
        "rows": rows,
        "pairs": cmp["pairs"],
        "provenance": provenance(task),
    }


def task_notes(task: str, rows: list[dict[str, Any]]) -> str:
    """The protocol of one task's part, in words computed from its rows (their runs and seeds)."""
    seeds = sorted({tuple(r["seeds"]) for r in rows})
    steps = sorted({r["train_steps"] for r in rows})
    data = sorted({r["data"] for r in rows})
    seed_text = ", ".join(f"{a}..{b}" for a, b in seeds)
    return (
        f"{task}: training data {'; '.join(data)}; training steps {', '.join(map(str, steps))} per policy; "
        f"evaluation seeds {seed_text}."
    )


_KEYS = (
    "n_episodes",
    "seeds",
    "success_rate",
    "success_ci",
    "behaviour_entropy",
    "n_behaviours_seen",
    "behaviour_counts",
    "mean_score",
    "nfe",
    "sampler",
    "latency_ms",
    "n_errors",
)


def main(args: Args) -> dict[str, Any]:
    """Run the selected tasks, merge with earlier results, write the JSON, print the table."""
    torch.set_num_threads(1)
    summary: dict[str, Any] = dict(read_json(args.out)) if args.out.exists() else {}
    summary.setdefault("tasks", {})
    for task in args.tasks:
        print(f"{task}:")
        summary["tasks"][task] = run_task(task, args)
    summary.pop("notes", None)  # older files: one typed-in text for all tasks; now each part has its own
    summary["provenance"] = provenance(sorted(summary["tasks"]))
    parts = {task: part.get("provenance") for task, part in summary["tasks"].items()}
    summary["same_code"] = len(parts) < 2 or all(
        same_code(next(iter(parts.values())), p) for p in list(parts.values())[1:]
    )
    if not summary["same_code"]:
        print("note: the tasks' parts were made by different code; each part records its own provenance")
    atomic_write_json(args.out, summary)
    for task, res in summary["tasks"].items():
        print(f"\n{task}")
        for r in res["rows"]:
            lo, hi = r["success_ci"]
            print(
                f"  {r['name']:28s} success {r['success_rate']:.3f} [{lo:.3f}, {hi:.3f}]  {r['letters']:3s} "
                f"H {r['behaviour_entropy']:.3f}  KL {r['kl_to_data']:.3f}  ({r['n_behaviours_seen']} behaviours)"
            )
    print(json.dumps({"out": str(args.out), "report": str(args.report)}))
    return summary


if __name__ == "__main__":
    main(tyro.cli(Args))
