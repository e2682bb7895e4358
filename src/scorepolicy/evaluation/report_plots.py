"""Figures of a comparison report: posterior violins, success vs NFE, rollout trajectories."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from scorepolicy.evaluation.stats import success_posterior, wilson_interval

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from scorepolicy.evaluation.report import Entry

SUCCESS_COLOUR = "#1f77b4"
FAILURE_COLOUR = "#d62728"
_MAX_TRAJECTORIES = 100


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, bbox_inches="tight", dpi=100)
    return path.name


def posterior_violins(entries: Sequence[Entry], path: Path) -> str:
    """Violins of the Beta(1 + s, 1 + f) posterior of each policy's success rate, with 95% intervals."""
    rng = np.random.default_rng(0)
    posts = [success_posterior(e.successes, e.n) for e in entries]
    fig = Figure(figsize=(1.2 + 1.1 * len(entries), 3.6))
    ax = fig.add_subplot()
    ax.violinplot([p.sample(4000, rng) for p in posts], showextrema=False, widths=0.8)
    for i, p in enumerate(posts, start=1):
        lo, hi = p.interval()
        ax.plot([i, i], [lo, hi], color="black", lw=1.5)
        ax.plot([i], [p.mean], "o", color="black", ms=4)
    ax.set_xticks(range(1, len(entries) + 1), [e.name for e in entries], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("success rate (posterior)")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{entries[0].result['task']}: Beta(1+s, 1+f) posteriors, 95% credible", fontsize=9)
    return _save(fig, path)


def success_vs_nfe(entries: Sequence[Entry], path: Path) -> str | None:
    """Success (Wilson 95% bars) against NFE for every run (and sampler) evaluated at two or more NFEs;
    None if there is none."""
    runs: dict[str, list[Entry]] = {}
    for e in entries:
        if e.result.get("nfe") is not None:
            label = Path(str(e.result.get("run") or e.name)).name
            sampler = e.result.get("sampler")
            runs.setdefault(f"{label} ({sampler})" if sampler else label, []).append(e)
    runs = {k: v for k, v in runs.items() if len({x.result["nfe"] for x in v}) >= 2}
    if not runs:
        return None
    fig = Figure(figsize=(5.0, 3.6))
    ax = fig.add_subplot()
    for run, group in runs.items():
        group = sorted(group, key=lambda x: x.result["nfe"])
        nfe = [x.result["nfe"] for x in group]
        rate = np.array([x.successes / x.n for x in group])
        ci = np.array([wilson_interval(x.successes, x.n) for x in group])
        ax.errorbar(nfe, rate, yerr=[rate - ci[:, 0], ci[:, 1] - rate], marker="o", capsize=3, label=run)
    ax.set_xscale("log")
    ax.set_xlabel("NFE (denoiser calls per chunk)")
    ax.set_ylabel("success (Wilson 95%)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _grid(n: int) -> tuple[Figure, list[Axes]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.6 * cols, 3.6 * rows))
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def _paths(e: Entry) -> tuple[list[np.ndarray], list[bool]]:
    eps = [x for x in e.episodes if x.get("observations")][:_MAX_TRAJECTORIES]
    return [np.asarray(x["observations"], dtype=float) for x in eps], [bool(x.get("success")) for x in eps]


def _draw(ax: Axes, lines: list[np.ndarray], ok: list[bool]) -> None:
    alpha = float(np.clip(10.0 / max(len(lines), 1), 0.15, 0.9))
    for flag, colour in ((True, SUCCESS_COLOUR), (False, FAILURE_COLOUR)):
        chosen = [ln for ln, s in zip(lines, ok) if s == flag and len(ln) > 1]
        ax.add_collection(LineCollection(chosen, colors=colour, linewidths=0.8, alpha=alpha, zorder=3))


def trajectories(entries: Sequence[Entry], path: Path) -> str | None:
    """Rollout paths of each policy (obstacle task: over the field; Push-T: the agent in pixels)."""
    chosen = [e for e in entries if _paths(e)[0]]
    if not chosen:
        return None
    task = str(chosen[0].result["task"])
    fig, axes = _grid(len(chosen))
    for ax, e in zip(axes, chosen):
        lines, ok = _paths(e)
        if task == "obstacles":
            from scorepolicy.envs.obstacles_plot import draw_obstacle_field

            draw_obstacle_field(ax, label_gaps=False)
            _draw(ax, [ln[:, :2] for ln in lines], ok)
        else:  # Push-T and other tasks whose first two observation entries are an agent position
            _draw(ax, [ln[:, :2] for ln in lines], ok)
            if task.startswith("pusht"):  # pixels, y down as rendered
                ax.set_xlim(0, 512)
                ax.set_ylim(512, 0)
            else:
                ax.autoscale()
            ax.set_aspect("equal")
        ax.set_title(f"{e.name}\n{sum(ok)}/{len(ok)} successful (blue)", fontsize=8)
        ax.tick_params(labelsize=6)
    return _save(fig, path)


def write_figures(entries: Sequence[Entry], out: Path) -> list[str]:
    """All figures of one task's comparison, written into `out`; returns their file names."""
    task = str(entries[0].result["task"])
    figures = [posterior_violins(entries, out / f"{task}_posterior.png")]
    for fn, name in ((success_vs_nfe, "success_vs_nfe"), (trajectories, "trajectories")):
        got = fn(entries, out / f"{task}_{name}.png")
        if got is not None:
            figures.append(got)
    return figures
