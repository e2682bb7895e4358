"""Guarding a trained run: calibrate its FIPER monitor (rollouts of the run on its task) and save it;
benchmark a monitor per perturbation condition."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from scorepolicy.api.runs import load_policy, run_task_name
from scorepolicy.envs.registry import get_task
from scorepolicy.evaluation.rollout import RolloutOptions
from scorepolicy.evaluation.stats import wilson_interval
from scorepolicy.files import atomic_write_json, read_json
from scorepolicy.guard import GuardSettings, Monitor, calibrate
from scorepolicy.guard.calibrate import CALIBRATION_SEED
from scorepolicy.guard.monitor import Style
from scorepolicy.policies import ChunkPolicy
from scorepolicy.provenance import provenance


def calibrate_run(
    run_dir: Path,
    episodes: int = 50,
    delta: float = 0.05,
    *,
    out: Path | None = None,
    seed: int = CALIBRATION_SEED,
    settings: GuardSettings | None = None,
    nfe: int | None = None,
    sampler: str | None = None,
    n_envs: int = 50,
) -> Monitor:
    """Calibrate a monitor for a run's policy on its task (seeds seed..); saved to `out` when given."""
    policy = load_policy(run_dir, nfe, sampler)
    task = get_task(run_task_name(run_dir))
    options = RolloutOptions(n_envs=n_envs, progress=False)
    monitor = calibrate(policy, task, episodes, delta, seed=seed, settings=settings, options=options)
    monitor.info["run"] = str(run_dir)
    if out is not None:
        monitor.save(out)
    return monitor


@dataclass
class BenchConfig:
    """What `scorepolicy guard bench` (and benchmarks/guard.py) measures."""

    run: Path
    """Run directory (a score policy)."""
    conditions: str = "nominal,obs-noise,block-shift,unseen-start"
    """Comma-separated conditions (see `scorepolicy.envs.conditions`)."""
    monitor: Path | None = None
    """A calibrated monitor directory; None calibrates one on nominal episodes first."""
    calibration_episodes: int = 150
    """Calibration episodes when no monitor is given (seeds CALIBRATION_SEED..)."""
    delta: float = 0.05
    """δ of the headline monitor when no monitor is given."""
    episodes: int = 100
    """Test episodes per condition."""
    seed: int | None = None
    """First test seed (default: the task's)."""
    nfe: int | None = None
    """Denoiser evaluations per chunk (default: the run's)."""
    sampler: str | None = None
    """Sampler (default: the run's)."""
    n_envs: int = 50
    """Environments stepped together."""
    positions: Literal["action", "cumsum"] = "action"
    """How the entropy reads positions from actions when calibrating here."""
    style: Style = "episode"
    """Threshold style when calibrating here (see `guard.monitor`)."""
    plot: Path | None = None
    """PNG of both scores over time for a failing and a succeeding episode."""
    deltas: tuple[float, ...] = (0.05, 0.1)
    """δ values whose false-alarm rate on fresh nominal successes is reported."""
    windows: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    """Windows of the sweep on the test episodes (reported, never chosen there) and the candidates of the
    choice on validation episodes."""
    select_seed: int | None = 400_000
    """First seed of the validation episodes (`episodes` per condition, guarded like the test ones) on which
    each rule's window and threshold style are chosen (`guard.bench.select_settings`); None keeps the
    monitor's own."""
    overhead_repeats: int = 300
    """Timed decisions for the overhead."""
    save: Path | None = None
    """Directory to keep the monitor (monitor/) and every episode's per-decision scores (records.json), so
    that `analyse_saved` can re-measure other thresholds, rules or δ without new rollouts."""


def bench_monitor(cfg: BenchConfig, policy: ChunkPolicy, task_name: str) -> Monitor:
    """The monitor under test: loaded (and checked against the policy), or calibrated on nominal episodes."""
    if cfg.monitor is not None:
        monitor = Monitor.load(cfg.monitor)
        monitor.check_policy(policy, str(cfg.monitor))
        return monitor
    options = RolloutOptions(n_envs=cfg.n_envs, progress=False)
    settings = GuardSettings(positions=cfg.positions, style=cfg.style)
    return calibrate(
        policy, get_task(task_name), cfg.calibration_episodes, cfg.delta, settings=settings, options=options
    )


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Calibrate (or load) a monitor, roll out every condition guarded, and measure it (see guard.bench)."""
    from scorepolicy.guard import bench

    t0, c0 = time.perf_counter(), time.process_time()
    policy = load_policy(cfg.run, cfg.nfe, cfg.sampler)
    task_name = run_task_name(cfg.run)
    conditions = [c.strip() for c in cfg.conditions.split(",") if c.strip()]
    tasks = {c: get_task(task_name, c) for c in conditions}  # bad names fail before any rollout
    monitor = bench_monitor(cfg, policy, task_name)
    t_cal = time.perf_counter() - t0
    first = tasks[conditions[0]].default_seed if cfg.seed is None else cfg.seed
    seeds = range(first, first + cfg.episodes)
    options = RolloutOptions(n_envs=cfg.n_envs, progress=False)
    records = {c: bench.guarded_records(policy, monitor, tasks[c], seeds, options) for c in conditions}
    validation = None
    if cfg.select_seed is not None:
        val_seeds = range(cfg.select_seed, cfg.select_seed + cfg.episodes)
        validation = {
            c: bench.guarded_records(policy, monitor, tasks[c], val_seeds, options) for c in conditions
        }
    conds = {c: tasks[c].condition.as_dict() for c in conditions}
    if cfg.save is not None:
        monitor.save(cfg.save / "monitor")
        saved = {"run": str(cfg.run), "task": task_name, "conditions": conds, "records": records}
        atomic_write_json(cfg.save / "records.json", saved | {"validation": validation})
    result = analyse(monitor, records, conds, cfg, task_name, validation)
    result["overhead"] = bench.decision_overhead(policy, monitor, cfg.overhead_repeats)
    result["seconds"] = {
        "calibration": t_cal,
        "total": time.perf_counter() - t0,
        "cpu": time.process_time() - c0,
    }
    return result


def analyse(
    monitor: Monitor,
    records: dict[str, list[dict[str, Any]]],
    conditions: dict[str, dict[str, Any]],
    cfg: BenchConfig,
    task_name: str,
    validation: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Everything but the overhead from guarded records (with `guard_scores`) per condition: per condition
    and rule the detection metrics, pooled, false alarms on fresh nominal successes per δ, the window sweep,
    and the plot. With `validation` records, each rule's window and style are chosen on them first and the
    FIPER rule's choice is the headline monitor."""
    from scorepolicy.guard import bench

    pooled = [r for rs in records.values() for r in rs]
    chosen = None
    if validation and cfg.select_seed is not None:
        chosen = bench.select_settings(monitor, [r for rs in validation.values() for r in rs], cfg.windows)
        monitor = monitor.recalibrated(window=chosen["and"]["window"], style=chosen["and"]["style"])
    per_condition = {}
    for c, rs in records.items():
        s = sum(float(r["success"]) > 0.5 for r in rs)
        per_condition[c] = {
            "condition": conditions[c],
            "n_episodes": len(rs),
            "success_rate": s / len(rs),
            "success_ci": list(wilson_interval(s, len(rs))),
            "rules": bench.rule_metrics(monitor, rs, chosen),
        }
    fresh = [r for r in records.get("nominal", []) if float(r["success"]) > 0.5]
    seeds = sorted(int(r["seed"]) for r in pooled)
    result: dict[str, Any] = {
        "run": str(cfg.run),
        "task": task_name,
        "test_seeds": [seeds[0], seeds[-1]] if seeds else [],
        "monitor": {k: v for k, v in monitor.settings.items() if k != "rnd"}
        | {"rnd": monitor.settings["rnd"]},
        "thresholds": {k: np.round(v, 6).tolist() for k, v in monitor.thresholds.items()},
        "calibration": {k: v for k, v in monitor.info.items() if k not in ("provenance", "rnd_loss")},
        "conditions": per_condition,
        "pooled": bench.rule_metrics(monitor, pooled, chosen),
        "false_alarms_on_fresh_successes": bench.false_alarms(monitor, fresh, cfg.deltas),
        "window_sweep": bench.window_sweep(monitor, pooled, cfg.windows),
        "provenance": provenance(task_name),
    }
    if validation and chosen is not None:
        val_seeds = sorted(int(r["seed"]) for rs in validation.values() for r in rs)
        result["selection"] = {"by": "pooled balanced accuracy", "seeds": [val_seeds[0], val_seeds[-1]]}
        result["selection"]["chosen"] = chosen
    if cfg.plot is not None:
        picked = bench.pick_plot_episodes(records, monitor)
        if picked is not None:
            bench.plot_scores(monitor, picked[0], picked[1], cfg.plot)
            result["plot"] = {"path": str(cfg.plot), "failure": _ref(picked[0]), "success": _ref(picked[1])}
    return result


def analyse_saved(directory: Path, cfg: BenchConfig, monitor: Monitor | None = None) -> dict[str, Any]:
    """`analyse` on what `run_bench(save=DIR)` kept (DIR/monitor, DIR/records.json); `monitor` (e.g. the
    saved one recalibrated to another style) replaces the saved one."""
    saved: Any = read_json(directory / "records.json")
    monitor = monitor or Monitor.load(directory / "monitor")
    return analyse(
        monitor, saved["records"], saved["conditions"], cfg, saved["task"], saved.get("validation")
    )


def _ref(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("condition", "seed", "length", "first_alarm_step")}


def format_bench(result: dict[str, Any]) -> str:
    """The benchmark as a text table: per condition and rule, TPR / TNR / accuracy / DT / TWA with intervals."""

    def est(m: dict[str, Any], key: str) -> str:
        v, ci = m.get(key), m.get(f"{key}_ci")
        if v is None:
            return "–"
        return f"{v:.2f} ({ci[0]:.2f}-{ci[1]:.2f})" if ci else f"{v:.2f}"

    lines = [
        "| condition | success | rule | TPR | TNR | accuracy | DT | TWA |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [(c, v["success_rate"], v["rules"]) for c, v in result["conditions"].items()]
    rows.append(("pooled", None, result["pooled"]))
    for cond, success, rules in rows:
        for rule, m in rules.items():
            succ = f"{success:.0%}" if success is not None else ""
            lines.append(
                f"| {cond} | {succ} | {RULE_LABELS[rule]} | {est(m, 'tpr')} | {est(m, 'tnr')} | "
                f"{est(m, 'accuracy')} | {est(m, 'mean_detection_time')} | {est(m, 'twa')} |"
            )
    for row in result["false_alarms_on_fresh_successes"]:
        ci, head = row["ci"], f"false alarms on fresh successes, δ = {row['delta']:g}"
        if "error" in row:
            lines.append(f"{head}: not calibrated ({row['error']})")
        elif ci is None:
            lines.append(f"{head}: no fresh successful episodes")
        else:
            rate = f"{row['rate']:.3f} ({ci[0]:.3f}-{ci[1]:.3f})"
            lines.append(f"{head}: {row['false_alarms']}/{row['n_successes']} = {rate}")
    sel = result.get("selection")
    if sel is not None:
        picks = "; ".join(
            f"{RULE_LABELS[rule]} w = {c['window']}, {c['style']} ({c['accuracy']:.2f})"
            for rule, c in sel["chosen"].items()
        )
        lines.append(
            f"chosen on validation seeds {sel['seeds'][0]}..{sel['seeds'][1]} ({sel['by']}): {picks}"
        )
    lines.append("FIPER pooled over conditions by window and threshold style (TPR / TNR / accuracy / TWA):")
    for row in result["window_sweep"]:
        vals = " / ".join(
            "–" if row[k] is None else f"{row[k]:.2f}" for k in ("tpr", "tnr", "accuracy", "twa")
        )
        lines.append(f"  w = {row['window']}, {row['style']}: {vals}")
    o = result.get("overhead")
    if o is None:
        return "\n".join(lines)
    lines.append(
        f"overhead per decision (B = {o['n_samples']}, NFE {o['nfe']}, batch 1, CPU time): {o['overhead_ms']:.2f} ms "
        f"(policy {o['policy_cpu_ms']:.2f} ms, guarded {o['guarded_cpu_ms']:.2f} ms; wall {o['overhead_wall_ms']:.2f} ms)"
    )
    return "\n".join(lines)


RULE_LABELS = {"and": "FIPER", "rnd": "RND alone", "ace": "ACE alone"}
