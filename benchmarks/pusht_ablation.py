"""Push-T ablation table: which lever (observation, denoiser, training length, EMA, sampling steps,
distillation) moved what, on the Diffusion Policy low-dim protocol, with intervals.

Each row is an existing run (`LABEL=RUN` or `LABEL=RUN@NFE`). A run with kept snapshots is reduced to the
snapshot chosen on validation seeds (`scorepolicy select`, 100 episodes of seeds 0..99; an existing
selection.json on the same seeds is reused); a run without snapshots (e.g. a distilled student) is taken
as it is. Every row is then evaluated on the same evaluation episodes (default 100 of seeds 100000..,
300 steps): mean score with its 95% interval, success with its Wilson 95% interval, and against the
reference row (the first unless --reference) Barnard's exact test on success and Welch's test on score.
Training cost is the wall minutes logged in metrics.csv times processes times threads. Latency per chunk
(batch 1, one thread, median of 300) is timed after all rollouts. Prints the table, writes
benchmarks/results/pusht_ablation.json and a plot beside it.

    python benchmarks/pusht_ablation.py --rows "state MLP 40k=runs/pusht" "keypoints MLP 40k=runs/kp40" \\
        "keypoints MLP 40k, NFE 10=runs/kp40@10"
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from scorepolicy import api
from scorepolicy.evaluation import EvalConfig
from scorepolicy.evaluation.stats import exact_test, welch_test
from scorepolicy.files import atomic_write_json, read_json
from scorepolicy.provenance import provenance

RESULTS = Path(__file__).parent / "results"


@dataclass
class Args:
    """Ablation table options."""

    rows: tuple[str, ...]
    """Rows as LABEL=RUN or LABEL=RUN@NFE (NFE default: the run's own)."""
    reference: str | None = None
    """Label of the row the tests compare against (default: the first)."""
    episodes: int = 100
    """Evaluation episodes per row."""
    seed: int = 100_000
    """First evaluation seed."""
    val_episodes: int = 100
    """Validation episodes per snapshot when a run's snapshot is chosen here."""
    val_seed: int = 0
    """First validation seed."""
    latency: bool = True
    """Time each row's chunk (batch 1, one thread) after all rollouts."""
    reuse: bool = False
    """Keep the rows of an existing --out JSON whose label, run, NFE and evaluation seeds are unchanged
    (to add rows to a table without evaluating the others again)."""
    out: Path = RESULTS / "pusht_ablation.json"
    """Result JSON (the plot goes beside it)."""


def parse_row(spec: str) -> tuple[str, Path, int | None]:
    """LABEL=RUN[@NFE] → (label, run, nfe)."""
    label, sep, where = spec.partition("=")
    if not sep or not label or not where:
        raise SystemExit(f"--rows: '{spec}' is not LABEL=RUN or LABEL=RUN@NFE")
    path, _, nfe = where.partition("@")
    return label.strip(), Path(path), int(nfe) if nfe else None


def chosen_snapshot(run: Path, args: Args) -> tuple[Path, str | None]:
    """The directory to evaluate: run/best chosen on validation seeds (reusing a matching selection.json),
    or the run itself when it keeps no snapshots."""
    if not (run / "checkpoints").is_dir() or not any((run / "checkpoints").iterdir()):
        return run, None
    sel_path = run / "selection.json"
    if sel_path.is_file() and (run / "best").exists():
        sel = read_json(sel_path)
        if sel.get("first_seed") == args.val_seed and sel.get("episodes") == args.val_episodes:
            return run / "best", str(sel["best"])
    val = EvalConfig(episodes=args.val_episodes, seed=args.val_seed, progress=False)
    return run / "best", str(api.select_snapshot(run, val)["best"])


def logged_minutes(run: Path) -> float | None:
    """Wall minutes of a run, summed from the logging intervals of its metrics.csv (None without one)."""
    if not (run / "metrics.csv").is_file():
        return None
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("steps_per_s")]
    steps = [int(r["step"]) for r in rows]
    gaps = [b - a for a, b in zip([0, *steps[:-1]], steps)]
    return sum(g / float(r["steps_per_s"]) for g, r in zip(gaps, rows)) / 60


def training_cost(run: Path) -> dict[str, Any]:
    """Steps, wall minutes logged in metrics.csv, and CPU minutes (x ranks x threads) of a run; a distilled
    student's CPU minutes include its teacher's run."""
    meta = read_json(run / "train_config.json")
    train = meta.get("train", {})
    distill = meta.get("distill") or {}
    minutes = logged_minutes(run)
    procs = int(train.get("ranks", 1)) * int(train.get("num_threads", 1))
    cpu = None if minutes is None else minutes * procs
    if distill.get("teacher"):
        teacher = Path(distill["teacher"])
        if not (teacher / "metrics.csv").is_file():  # a selected snapshot (RUN/best's copy): its run
            teacher = teacher.parent
        teacher_cpu = (
            training_cost(teacher)["cpu_minutes"] if (teacher / "train_config.json").is_file() else None
        )
        cpu = None if cpu is None or teacher_cpu is None else cpu + teacher_cpu
    return {
        "task": meta.get("task"),
        "steps": distill.get("steps", train.get("steps")),
        "ema_schedule": train.get("ema_schedule", "constant"),
        "distilled_from": distill.get("teacher"),
        "train_minutes": minutes,
        "cpu_minutes": cpu,
    }


def score_interval(scores: list[float]) -> list[float]:
    """Normal 95% interval of the mean score over episodes."""
    mean, half = float(np.mean(scores)), 1.96 * float(np.std(scores, ddof=1)) / len(scores) ** 0.5
    return [mean - half, mean + half]


def evaluate_row(label: str, run: Path, nfe: int | None, args: Args) -> dict[str, Any]:
    """One row: choose the snapshot, roll out on the evaluation seeds, score interval."""
    where, snapshot = chosen_snapshot(run, args)
    cfg = EvalConfig(episodes=args.episodes, seed=args.seed, progress=False)
    res = api.evaluate_run(where, cfg, nfe=nfe)
    scores = [float(e["score"]) for e in res["episodes"]]
    policy_cfg = read_json(where / "config.json")["policy"]
    row = {
        "label": label,
        "run": str(run),
        "evaluated": str(where),
        "snapshot": snapshot,
        "denoiser": policy_cfg["denoiser"],
        "nfe": nfe or policy_cfg["diffusion"]["nfe"],
        "mean_score": float(np.mean(scores)),
        "score_ci": score_interval(scores),
        "success_rate": res["success_rate"],
        "success_ci": res["success_ci"],
        "n_success": int(sum(int(e["success"]) for e in res["episodes"])),
        "episodes": len(scores),
        "n_errors": res.get("n_errors", 0),
        "scores": scores,
        **training_cost(run),
    }
    print(
        f"{label}: score {row['mean_score']:.3f}, success {row['success_rate']:.2f} ({snapshot or 'as is'})"
    )
    return row


def compare(rows: list[dict[str, Any]], reference: str | None) -> None:
    """p-values of each row against the reference row (success: Barnard; score: Welch)."""
    ref = next((r for r in rows if r["label"] == reference), rows[0]) if reference else rows[0]
    for r in rows:
        r["reference"] = ref["label"]
        if r is ref:
            r["p_success"] = r["p_score"] = None
            continue
        r["p_success"] = exact_test(r["n_success"], r["episodes"], ref["n_success"], ref["episodes"])
        r["p_score"] = welch_test(r["scores"], ref["scores"]).p_value


def print_table(rows: list[dict[str, Any]]) -> None:
    """The ablation table."""
    head = f"{'row':<40} {'score':>6} {'95% CI':>14} {'success':>8} {'Wilson 95%':>12} {'p succ':>7} {'CPU min':>8} {'ms':>6}"
    print(head)
    for r in rows:
        slo, shi = r["score_ci"]
        lo, hi = r["success_ci"]
        p = "ref" if r["p_success"] is None else f"{r['p_success']:.2g}"
        cpu = "-" if r["cpu_minutes"] is None else f"{r['cpu_minutes']:.0f}"
        ms = f"{r['ms_per_chunk']:.2f}" if r.get("ms_per_chunk") is not None else "-"
        print(
            f"{r['label'][:40]:<40} {r['mean_score']:>6.3f} {f'[{slo:.3f},{shi:.3f}]':>14} {r['success_rate']:>8.2f} "
            f"{f'[{lo:.2f},{hi:.2f}]':>12} {p:>7} {cpu:>8} {ms:>6}"
        )


def plot(rows: list[dict[str, Any]], path: Path, episodes: int) -> None:
    """Horizontal bars of score and success per row, with their intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.arange(len(rows))[::-1]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 1.6), sharey=True)
    for ax, key, ci, name in (
        (axes[0], "mean_score", "score_ci", "mean score"),
        (axes[1], "success_rate", "success_ci", "success"),
    ):
        v = np.array([r[key] for r in rows])
        err = np.array([[r[key] - r[ci][0], r[ci][1] - r[key]] for r in rows]).T
        ax.barh(y, v, xerr=err, capsize=3, color="tab:blue", alpha=0.7)
        ax.set(xlim=(0, 1), xlabel=f"{name} (95% interval), {episodes} episodes")
    axes[0].set_yticks(y, [r["label"] for r in rows])
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def reusable_rows(args: Args) -> dict[tuple[str, str, int | None], dict[str, Any]]:
    """Rows of the existing result JSON evaluated on the same seeds, keyed by (label, run, requested NFE)."""
    if not args.reuse or not args.out.is_file():
        return {}
    old = read_json(args.out)
    return {
        (r["label"], r["run"], r.get("requested_nfe")): r
        for r in old.get("rows", [])
        if r["episodes"] == args.episodes and r.get("seed") == args.seed
    }


def main(args: Args) -> None:
    old, rows = reusable_rows(args), []
    for spec in args.rows:
        label, run, nfe = parse_row(spec)
        row = old.get((label, str(run), nfe)) or evaluate_row(label, run, nfe, args)
        rows.append({**row, "requested_nfe": nfe, "seed": args.seed})
    if args.latency:  # after every rollout, so that no evaluation shares the machine
        for r in rows:
            if r.get("ms_per_chunk") is None:
                lat = api.measure_latency(api.load_policy(Path(r["evaluated"]), r["nfe"]), batch=1, threads=1)
                r["ms_per_chunk"] = lat["ms_per_chunk"]
    compare(rows, args.reference)
    print_table(rows)
    tasks = sorted({r["task"] for r in rows if r["task"]})
    result = {
        "protocol": f"Push-T, 90 training episodes (DP low-dim protocol); {args.episodes} evaluation episodes from "
        f"seed {args.seed}, 300 steps; snapshots chosen on {args.val_episodes} episodes from seed {args.val_seed}",
        "rows": rows,
        "provenance": provenance(tasks),
    }
    atomic_write_json(args.out, result)
    plot(rows, args.out.with_suffix(".png"), args.episodes)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main(tyro.cli(Args))
