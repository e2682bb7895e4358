"""Pictures of the obstacle task: fast numpy video frames and matplotlib plots of many rollouts."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Rectangle

from scorepolicy.envs.obstacles import LAYOUT, ObstacleLayout
from scorepolicy.errors import ScorePolicyError

SUCCESS_COLOUR = "#1f77b4"
FAILURE_COLOUR = "#d62728"
_OBSTACLE_RGB = (90, 90, 100)
_GOAL_RGB = (200, 235, 200)
_TRAIL_RGB = (31, 119, 180)
_AGENT_RGB = (214, 39, 40)


@functools.lru_cache(maxsize=8)
def _background(layout: ObstacleLayout, size: int) -> np.ndarray:
    centres = (np.arange(size) + 0.5) / size
    xs, ys = centres[None, :], 1.0 - centres[:, None]  # image row 0 is the top (y = 1)
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    img[np.broadcast_to(ys >= layout.goal_y, (size, size))] = _GOAL_RGB
    for cx, cy, r in layout.obstacles:
        img[(xs - cx) ** 2 + (ys - cy) ** 2 <= r * r] = _OBSTACLE_RGB
    img.flags.writeable = False
    return img


def render_frame(
    path: Sequence[tuple[float, float]], layout: ObstacleLayout = LAYOUT, size: int = 128
) -> np.ndarray:
    """A (size, size, 3) uint8 frame: obstacles, goal band, the path so far and the agent (last point)."""
    img = _background(layout, size).copy()
    pts = np.asarray(path, dtype=np.float64).reshape(-1, 2)
    cols = np.clip((pts[:, 0] * size).astype(np.int64), 0, size - 1)
    rows = np.clip(((1.0 - pts[:, 1]) * size).astype(np.int64), 0, size - 1)
    img[rows, cols] = _TRAIL_RGB
    radius = max(2, size // 40)
    r0, c0 = int(rows[-1]), int(cols[-1])
    dr, dc = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = dr**2 + dc**2 <= radius**2
    rr, cc = (r0 + dr)[disk], (c0 + dc)[disk]
    keep = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
    img[rr[keep], cc[keep]] = _AGENT_RGB
    return img


def draw_obstacle_field(ax: Axes, layout: ObstacleLayout = LAYOUT, label_gaps: bool = True) -> None:
    """Draw the goal band, the obstacles and (optionally) the gap indices of each row on `ax`."""
    ax.add_patch(Rectangle((0.0, layout.goal_y), 1.0, 1.0 - layout.goal_y, color="#c8ebc8", zorder=0))
    ax.axhline(layout.goal_y, color="#2ca02c", lw=1.0, ls="--", zorder=1)
    for cx, cy, r in layout.obstacles:
        ax.add_patch(Circle((cx, cy), r, facecolor="#5a5a64", edgecolor="#2a2a30", zorder=2))
    if label_gaps:
        for k, y in enumerate(layout.row_y):
            for g in range(layout.n_gaps[k]):
                x = layout.gap_centre(k, g)
                ax.text(x, y, str(g), ha="center", va="center", fontsize=7, color="0.55", zorder=1)
    sx, sy = layout.start
    ax.plot([sx], [sy], marker="s", ms=5, color="black", zorder=4)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)


def plot_obstacle_rollouts(
    trajectories: list[np.ndarray],
    successes: list[bool],
    path: str | Path,
    title: str | None = None,
    layout: ObstacleLayout = LAYOUT,
) -> None:
    """Save a PNG of the field with every (T, 2) trajectory, successes and failures in two colours."""
    if len(trajectories) != len(successes):
        raise ScorePolicyError(
            f"plot_obstacle_rollouts: {len(trajectories)} trajectories but {len(successes)} success flags"
        )
    lines = [np.asarray(t, dtype=np.float64).reshape(-1, 2) for t in trajectories]
    good = [t for t, ok in zip(lines, successes) if ok]
    bad = [t for t, ok in zip(lines, successes) if not ok]
    alpha = float(np.clip(10.0 / max(len(lines), 1), 0.2, 0.9))
    fig = Figure(figsize=(5.0, 5.0), dpi=120)
    ax = fig.add_subplot()
    draw_obstacle_field(ax, layout)
    ax.add_collection(LineCollection(good, colors=SUCCESS_COLOUR, linewidths=1.0, alpha=alpha, zorder=3))
    ax.add_collection(LineCollection(bad, colors=FAILURE_COLOUR, linewidths=1.0, alpha=alpha, zorder=3))
    ends = np.array([t[-1] for t in bad if len(t)]).reshape(-1, 2)
    ax.scatter(ends[:, 0], ends[:, 1], marker="x", s=14, color=FAILURE_COLOUR, zorder=5)
    handles = [
        Line2D([], [], color=SUCCESS_COLOUR, label=f"success ({len(good)})"),
        Line2D([], [], color=FAILURE_COLOUR, marker="x", label=f"failure ({len(bad)})"),
    ]
    ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.9)
    ax.set_title(title or f"{len(good)}/{len(lines)} successful", fontsize=9)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
