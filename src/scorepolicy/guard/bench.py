"""Benchmarking a calibrated monitor on given tasks (one per condition): guarded rollouts with their raw
scores, FIPER's rule and the single-score baselines on the same episodes, false alarms on fresh
successes per δ, a window sweep, the monitor's overhead per decision, and the score plot.

Every rule is applied to the same recorded per-decision scores: the online alarm of `GuardedPolicy` equals
`Monitor.first_alarm` on them (tested), so the baselines and other δ or windows need no new rollouts.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.rollout import RolloutOptions
from scorepolicy.evaluation.stats import wilson_interval
from scorepolicy.evaluation.waves import run_rollouts
from scorepolicy.guard.guarded import GuardedPolicy
from scorepolicy.guard.metrics import detection_metrics
from scorepolicy.guard.monitor import Monitor, Rule, Style, windowed
from scorepolicy.policies import ChunkPolicy

RULES: tuple[Rule, ...] = ("and", "rnd", "ace")
STYLES: tuple[Style, ...] = ("episode", "normalized", "step")
GUARANTEED_STYLES: tuple[Style, ...] = ("episode", "normalized")
"""Threshold styles whose false-alarm rate on new successes is ≤ δ by construction ('step' is not)."""
RULE_NAMES = {"and": "FIPER (RND and ACE)", "rnd": "RND alone", "ace": "ACE alone"}


def guarded_records(
    policy: ChunkPolicy, monitor: Monitor, task: Task, seeds: Sequence[int], options: RolloutOptions
) -> list[dict[str, Any]]:
    """Guarded rollouts whose records keep the raw per-decision scores (`guard_scores`)."""
    guarded = GuardedPolicy(policy, monitor, keep_scores=True).rollout_policy()
    return [r for r in run_rollouts(guarded, task, seeds, options) if "error" not in r]


def _first_alarm(monitor: Monitor, record: Mapping[str, Any]) -> int | None:
    """The decision index of a guarded record's first alarm under `monitor` (None: no alarm)."""
    s = record["guard_scores"]
    return monitor.first_alarm(np.asarray(s["rnd"]), np.asarray(s["ace"]))


def with_alarms(monitor: Monitor, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """(success, first_alarm_step, length) of each record under `monitor`'s rule and thresholds."""
    out = []
    for r in records:
        s = r["guard_scores"]
        first = _first_alarm(monitor, r)
        step = None if first is None else int(s["steps"][first])
        out.append(
            {"success": float(r["success"]) > 0.5, "first_alarm_step": step, "length": int(r["length"])}
        )
    return out


def rule_metrics(
    monitor: Monitor,
    records: Sequence[Mapping[str, Any]],
    chosen: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Detection metrics (TPR, TNR, accuracy, DT, TWA with intervals) of each rule on the same episodes, each
    rule at its `chosen` window and style (`select_settings`) when given, else at the monitor's."""
    out: dict[str, dict[str, Any]] = {}
    for rule in RULES:
        pick = (chosen or {}).get(rule, {})
        m = monitor.recalibrated(rule=rule, window=pick.get("window"), style=pick.get("style"))
        out[rule] = detection_metrics(with_alarms(m, records))
    return out


def select_settings(
    monitor: Monitor,
    records: Sequence[Mapping[str, Any]],
    windows: Sequence[int],
    styles: Sequence[Style] = GUARANTEED_STYLES,
) -> dict[str, dict[str, Any]]:
    """For each rule, the window and threshold style with the best balanced accuracy on `records` (validation
    episodes of every condition, never the test ones; FIPER chooses both per task too). Ties go to the
    smaller window, then the earlier style. Only styles whose ≤ δ guarantee holds are candidates."""
    chosen: dict[str, dict[str, Any]] = {}
    for rule in RULES:
        best: dict[str, Any] | None = None
        for w in windows:
            for style in styles:
                m = detection_metrics(
                    with_alarms(monitor.recalibrated(window=w, style=style, rule=rule), records)
                )
                acc = -1.0 if m["accuracy"] is None else float(m["accuracy"])
                if best is None or acc > best["accuracy"] + 1e-12:
                    best = {"window": w, "style": style, "accuracy": acc, "twa": m["twa"]}
        if best is None:
            raise ScorePolicyError("guard bench: choosing a window and style needs at least one of each")
        chosen[rule] = best
    return chosen


def false_alarms(
    monitor: Monitor, successes: Sequence[Mapping[str, Any]], deltas: Sequence[float]
) -> list[dict[str, Any]]:
    """For each δ: the FIPER monitor recalibrated at δ, its false-alarm rate on fresh successful episodes
    with a Wilson interval, and whether the interval reaches down to δ or below (the target); a δ the
    calibration traces are too few for gets its error instead."""
    rows = []
    for delta in deltas:
        try:
            m = monitor.recalibrated(delta=delta)
        except ScorePolicyError as e:  # too few calibration episodes for this δ
            rows.append(
                {"delta": delta, "rate": None, "ci": None, "n_successes": len(successes), "error": str(e)}
            )
            continue
        alarms = sum(r["first_alarm_step"] is not None for r in with_alarms(m, successes))
        n = len(successes)
        ci = list(wilson_interval(alarms, n)) if n else None
        row: dict[str, Any] = {
            "delta": delta,
            "false_alarms": alarms,
            "n_successes": n,
            "rate": alarms / n if n else None,
            "ci": ci,
            "within_delta": bool(ci is not None and ci[0] <= delta),
        }
        rows.append(row)
    return rows


def window_sweep(
    monitor: Monitor, records: Sequence[Mapping[str, Any]], windows: Sequence[int]
) -> list[dict[str, Any]]:
    """FIPER's accuracy and TWA for other windows (thresholds recalibrated on the calibration traces)."""
    rows = []
    for w in windows:
        for style in STYLES:
            m = detection_metrics(with_alarms(monitor.recalibrated(window=w, style=style), records))
            rows.append({"window": w, "style": style, **{k: m[k] for k in ("tpr", "tnr", "accuracy", "twa")}})
    return rows


def decision_overhead(policy: ChunkPolicy, monitor: Monitor, repeats: int = 300) -> dict[str, Any]:
    """Median ms of one decision at batch 1 (the caller sets the threads), the policy's chunk alone and
    guarded (its chunk + B monitor chunks in one call, RND, entropy, alarm rule), interleaved; as this
    thread's CPU time (what the decision costs, robust to other processes on a busy machine) and wall time."""
    cfg = policy.cfg
    obs = ((policy.obs_min + policy.obs_max) / 2).expand(1, cfg.n_obs_steps, -1).clone()
    guarded = GuardedPolicy(policy, monitor)
    times: dict[str, list[float]] = {
        "policy_cpu": [],
        "guarded_cpu": [],
        "policy_wall": [],
        "guarded_wall": [],
    }
    for i in range(repeats + 20):
        if i % 40 == 0:
            policy.reset(seed=i)
            guarded.reset(seed=i)
        for name, call in (
            ("policy", lambda: policy.predict_action_chunk(obs)),
            ("guarded", lambda: guarded.decide(obs)),
        ):
            w, c = time.perf_counter(), time.thread_time()
            call()
            if i >= 20:
                times[f"{name}_cpu"].append((time.thread_time() - c) * 1000)
                times[f"{name}_wall"].append((time.perf_counter() - w) * 1000)
    out: dict[str, Any] = {k + "_ms": statistics.median(v) for k, v in times.items()}
    out["overhead_ms"] = out["guarded_cpu_ms"] - out["policy_cpu_ms"]
    out["overhead_wall_ms"] = out["guarded_wall_ms"] - out["policy_wall_ms"]
    return {**out, "repeats": repeats, "n_samples": monitor.n_samples, "nfe": cfg.diffusion.nfe}


def plot_scores(monitor: Monitor, failure: Mapping[str, Any], success: Mapping[str, Any], path: Path) -> None:
    """PNG of both windowed scores (over their thresholds) against env step, for a failing and a succeeding
    episode; the first alarm marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, (title, rec) in zip(axes, (("failure", failure), ("success", success))):
        s = rec["guard_scores"]
        steps = np.asarray(s["steps"])
        for name, color in (("rnd", "tab:blue"), ("ace", "tab:orange")):
            raw = np.asarray(s[name])
            win = windowed(raw, monitor.window)
            th = np.array([monitor.threshold(name, t) for t in range(len(raw))])
            ax.plot(steps, win / np.maximum(th, 1e-12), color=color, label=f"{name.upper()} / threshold")
        first = monitor.first_alarm(np.asarray(s["rnd"]), np.asarray(s["ace"]))
        if first is not None:
            ax.axvline(steps[first], color="red", ls=":", label="first alarm")
        ax.axhline(1.0, color="gray", ls="--", lw=1)
        cond = rec.get("condition", "")
        ax.set_title(f"{title} ({cond}, seed {rec['seed']}, {rec['length']} steps)")
        ax.set_xlabel("env step")
    axes[0].set_ylabel("windowed score / threshold")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pick_plot_episodes(
    records: Mapping[str, Sequence[Mapping[str, Any]]], monitor: Monitor
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A caught failure (any condition; else any failure) and a nominal success (else any), for the plot."""

    def tagged(cond: str, r: Mapping[str, Any]) -> dict[str, Any]:
        return {**r, "condition": cond}

    fails = [tagged(c, r) for c, rs in records.items() for r in rs if not r["success"]]
    succ = [tagged(c, r) for c, rs in records.items() for r in rs if r["success"]]
    caught = [r for r in fails if _first_alarm(monitor, r) is not None]
    nominal = [r for r in succ if r["condition"] == "nominal"]
    if not fails or not succ:
        return None
    return (caught or fails)[0], (nominal or succ)[0]
