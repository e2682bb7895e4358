"""Bundled 2-D multimodal obstacle-avoidance task: a point agent threads three rows of circles to a goal.

Rows of 1, 2 and 3 circular obstacles leave 2, 3 and 4 gaps (the walls x=0 and x=1 bound the field),
so there are 2·3·4 = 24 distinct routes, numbered route = g1*12 + g2*4 + g3 where g_k is the gap crossed
in row k counted left to right. The env is plain Python arithmetic (well over 30k steps/s); the scripted
expert picks every gap uniformly at random and flies smooth, full-speed diagonals from gap centre to
gap centre (like the human demonstrations of D3IL's "Avoiding" task), which makes the demonstrations
multimodal and the entropy of the routes taken a diversity measure.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from scorepolicy.core.behaviour import behaviour_entropy
from scorepolicy.core.episodes import Episodes
from scorepolicy.core.task import StepInfos, Task
from scorepolicy.errors import ScorePolicyError


def equal_gap_centres(n: int, radius: float) -> tuple[float, ...]:
    """x centres of n circles of one radius placed so that all n+1 gaps in [0, 1] are equally wide."""
    width = (1.0 - 2 * n * radius) / (n + 1)
    return tuple((i + 1) * width + (2 * i + 1) * radius for i in range(n))


@dataclass(frozen=True)
class ObstacleLayout:
    """Geometry of the field (the unit square), shared by the env, the expert, rendering and plots."""

    row_y: tuple[float, ...] = (0.19, 0.47, 0.88)
    """Height of each row of obstacles, bottom to top."""
    row_radius: tuple[float, ...] = (0.08, 0.055, 0.045)
    """Radius of the obstacles of each row."""
    row_centres: tuple[tuple[float, ...], ...] = ((0.5,), (0.375, 0.625), (0.27, 0.5, 0.73))
    """x centres of the obstacles of each row, left to right. With the heights and radii above they
    leave room for the expert's straight diagonal from any gap of a row to any gap of the next (and
    from the start to either gap of row 1) with at least 0.03 to spare; the outer gaps are the widest
    because the diagonals between the outermost gaps of two rows are the longest and flattest."""
    goal_y: float = 0.95
    """The episode succeeds when the agent reaches y >= goal_y without a collision."""
    start: tuple[float, float] = (0.5, 0.04)
    """Nominal start position (bottom centre)."""
    start_jitter: tuple[float, float] = (0.03, 0.01)
    """Half-width of the uniform random start offset in x and y."""
    max_step: float = 0.03
    """Displacement per env step for an action component of 1."""
    max_episode_steps: int = 150
    """Steps before the episode is truncated."""

    def __post_init__(self) -> None:
        n = len(self.row_y)
        if len(self.row_radius) != n or len(self.row_centres) != n or n == 0:
            raise ScorePolicyError("ObstacleLayout: row_y, row_radius and row_centres need one entry per row")
        if any(hi - lo <= 0 for k in range(n) for lo, hi in self.gaps(k)):
            raise ScorePolicyError("ObstacleLayout: obstacles of a row overlap each other or a wall")
        bottoms = [y - r for y, r in zip(self.row_y, self.row_radius)]
        tops = [y + r for y, r in zip(self.row_y, self.row_radius)]
        if (
            any(t >= b for t, b in zip(tops, bottoms[1:]))
            or bottoms[0] <= self.start[1] + self.start_jitter[1]
        ):
            raise ScorePolicyError("ObstacleLayout: rows must be stacked bottom to top above the start")
        if not self.row_y[-1] < self.goal_y < 1.0:
            raise ScorePolicyError("ObstacleLayout: goal_y must lie between the top row and the field's top")

    @property
    def n_gaps(self) -> tuple[int, ...]:
        """Number of gaps in each row."""
        return tuple(len(c) + 1 for c in self.row_centres)

    @property
    def n_routes(self) -> int:
        """Number of distinct routes (product of the gap counts)."""
        return math.prod(self.n_gaps)

    @property
    def obstacles(self) -> tuple[tuple[float, float, float], ...]:
        """Every obstacle as (x, y, radius)."""
        return tuple(
            (cx, y, r) for y, r, cs in zip(self.row_y, self.row_radius, self.row_centres) for cx in cs
        )

    def gaps(self, row: int) -> tuple[tuple[float, float], ...]:
        """The (left, right) x extent of every gap in a row."""
        r = self.row_radius[row]
        edges = [0.0] + [e for c in self.row_centres[row] for e in (c - r, c + r)] + [1.0]
        return tuple((edges[i], edges[i + 1]) for i in range(0, len(edges), 2))

    def gap_centre(self, row: int, gap: int) -> float:
        """x centre of one gap."""
        lo, hi = self.gaps(row)[gap]
        return 0.5 * (lo + hi)

    def gap_index(self, row: int, x: float) -> int:
        """Index of the gap of a row that contains x (counting obstacles to the left of x)."""
        return sum(1 for c in self.row_centres[row] if c < x)

    def route_of(self, gaps: Sequence[int]) -> int:
        """Route index of a full gap sequence (mixed radix, row 1 most significant)."""
        route = 0
        for g, n in zip(gaps, self.n_gaps):
            route = route * n + int(g)
        return route

    def gaps_of(self, route: int) -> tuple[int, ...]:
        """Gap sequence of a route index."""
        if not 0 <= route < self.n_routes:
            raise ScorePolicyError(f"route must be in [0, {self.n_routes}), got {route}")
        out = []
        for n in reversed(self.n_gaps):
            route, g = divmod(route, n)
            out.append(g)
        return tuple(reversed(out))

    def route_waypoints(self, route: int) -> list[tuple[float, float]]:
        """The expert's waypoints for a route: each chosen gap's centre at its row's height, then the
        point straight above the last one in the middle of the goal band (the path starts at the agent)."""
        gaps = self.gaps_of(route)
        points = [(self.gap_centre(k, g), y) for k, (g, y) in enumerate(zip(gaps, self.row_y))]
        return [*points, (points[-1][0], 0.5 * (self.goal_y + 1.0))]


LAYOUT = ObstacleLayout()
"""The default field: the one the bundled task, the expert and the plots use."""


class ObstacleEnv(gym.Env[np.ndarray, np.ndarray]):
    """Point agent in the unit square; action = velocity in [-1, 1]^2 times `layout.max_step`.

    Info at every step: `success`, `collision` (with an obstacle), `out_of_bounds`, `gaps` (gap index
    of every row crossed so far, bottom row first; crossing a row downwards removes it) and `route`
    (index in [0, 24) once all rows are crossed, else -1). Collisions and leaving the field end the
    episode as failures; reaching the goal line ends it as a success. `reset(options={"start": (x, y)})`
    places the agent exactly.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012

    def __init__(
        self,
        render_mode: str | None = None,
        layout: ObstacleLayout = LAYOUT,
        max_episode_steps: int | None = None,
        render_size: int = 128,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ScorePolicyError(
                f"ObstacleEnv: render_mode must be None or 'rgb_array', got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.layout = layout
        self.max_episode_steps = max_episode_steps or layout.max_episode_steps
        self.render_size = render_size
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._rows = tuple(zip(layout.row_y, layout.row_radius, layout.row_centres))
        self._x, self._y = layout.start
        self._gaps: list[int] = []
        self._t = 0
        self._trail: list[tuple[float, float]] = []

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode near the bottom centre (random offset from the seed)."""
        super().reset(seed=seed)
        if options and "start" in options:
            self._x, self._y = (float(v) for v in options["start"])
        else:
            (sx, sy), (jx, jy) = self.layout.start, self.layout.start_jitter
            self._x = sx + float(self.np_random.uniform(-jx, jx))
            self._y = sy + float(self.np_random.uniform(-jy, jy))
        self._gaps = []
        self._t = 0
        self._trail = [(self._x, self._y)]
        return np.array((self._x, self._y), dtype=np.float32), self._info(False, False, False)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Move by the clipped action; end on collision, on leaving the field or on reaching the goal."""
        ax, ay = float(action[0]), float(action[1])
        if not (math.isfinite(ax) and math.isfinite(ay)):
            raise ScorePolicyError(f"ObstacleEnv.step: action must be finite, got {action!r}")
        ax = -1.0 if ax < -1.0 else (1.0 if ax > 1.0 else ax)
        ay = -1.0 if ay < -1.0 else (1.0 if ay > 1.0 else ay)
        x0, y0 = self._x, self._y
        x1, y1 = x0 + ax * self.layout.max_step, y0 + ay * self.layout.max_step
        self._update_gaps(x0, y0, x1, y1)
        collision = self._hits_obstacle(x0, y0, x1, y1)
        out = not (0.0 <= x1 <= 1.0 and 0.0 <= y1 <= 1.0)
        success = not collision and not out and y1 >= self.layout.goal_y
        terminated = collision or out or success
        self._t += 1
        truncated = not terminated and self._t >= self.max_episode_steps
        self._x, self._y = x1, y1
        if self.render_mode is not None:
            self._trail.append((x1, y1))
        obs = np.array((x1, y1), dtype=np.float32)
        return obs, (1.0 if success else 0.0), terminated, truncated, self._info(success, collision, out)

    @property
    def agent(self) -> tuple[float, float]:
        """The agent's current position."""
        return self._x, self._y

    def move_agent(self, x: float) -> np.ndarray:
        """Displace the agent sideways to x (its height, and so the rows crossed, stay); the new observation."""
        self._x = float(x)
        if self.render_mode is not None:
            self._trail.append((self._x, self._y))
        return np.array((self._x, self._y), dtype=np.float32)

    def render(self) -> np.ndarray | None:
        """An RGB frame (render_size² uint8) of the field, the path so far and the agent."""
        if self.render_mode != "rgb_array":
            return None
        from scorepolicy.envs.obstacles_plot import render_frame

        return render_frame(self._trail or [(self._x, self._y)], self.layout, self.render_size)

    def _info(self, success: bool, collision: bool, out: bool) -> dict[str, Any]:
        full = len(self._gaps) == len(self._rows)
        return {
            "success": success,
            "collision": collision,
            "out_of_bounds": out,
            "route": self.layout.route_of(self._gaps) if full else -1,
            "gaps": tuple(self._gaps),
        }

    def _update_gaps(self, x0: float, y0: float, x1: float, y1: float) -> None:
        k = len(self._gaps)
        if k < len(self._rows) and y0 < self._rows[k][0] <= y1:
            xc = x0 + (x1 - x0) * (self._rows[k][0] - y0) / (y1 - y0)
            self._gaps.append(self.layout.gap_index(k, xc))
        elif k > 0 and y1 < self._rows[k - 1][0] <= y0:
            self._gaps.pop()

    def _hits_obstacle(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        dx, dy = x1 - x0, y1 - y0
        seg2 = dx * dx + dy * dy
        lo, hi = (y0, y1) if y0 < y1 else (y1, y0)
        for cy, r, centres in self._rows:
            if lo > cy + r or hi < cy - r:
                continue
            for cx in centres:
                t = ((cx - x0) * dx + (cy - y0) * dy) / seg2 if seg2 > 0.0 else 0.0
                t = 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)
                ex, ey = x0 + t * dx - cx, y0 + t * dy - cy
                if ex * ex + ey * ey < r * r:
                    return True
        return False


def _unit(x: float, y: float) -> tuple[tuple[float, float], float]:
    norm = math.hypot(x, y)
    return ((x / norm, y / norm) if norm > 0.0 else (0.0, 0.0)), norm


def _along(p: tuple[float, float], d: tuple[float, float], s: float) -> tuple[float, float]:
    return p[0] + s * d[0], p[1] + s * d[1]


def _bezier(
    p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float], p3: tuple[float, float], n: int
) -> list[tuple[float, float]]:
    """n + 1 points evenly spaced in t on the cubic Bézier curve with control points p0..p3."""
    out = []
    for i in range(n + 1):
        t = i / n
        c0, c1, c2, c3 = (1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t**3
        out.append(
            (
                c0 * p0[0] + c1 * p1[0] + c2 * p2[0] + c3 * p3[0],
                c0 * p0[1] + c1 * p1[1] + c2 * p2[1] + c3 * p3[1],
            )
        )
    return out


class ObstacleExpert:
    """Scripted expert: a uniformly random route per episode, flown as smooth diagonals between gaps.

    The route runs from the agent's first position in straight lines through the centre of the
    chosen gap of every row (at the row's height) and then straight up into the goal band. Each
    corner is rounded by two cubic Hermite arcs: the path leaves the incoming line `switch_radius`
    before the gap centre, crosses the centre heading along the bisector of the two lines (square
    to the turn, so a rounded corner never cuts towards an obstacle) and joins the outgoing line
    `switch_radius` after it (or half-way along a shorter line; sharp turns thus spread over ~2·
    `switch_radius` of path instead of one step). The expert follows this path at full speed: the
    action is the unit vector along the path at the agent's projection on it plus `gain / max_step`
    times the offset back onto the path (a `gain` fraction of any sideways error is corrected per
    step), normalised, plus Gaussian noise of std `noise`, clipped to [-1, 1].

    Call `reset()` at the start of each episode (it is also called automatically on the first call or
    when the observation jumps, as after an env reset); the path starts at the next observation.
    """

    _CORNER_SAMPLES = 12
    """Points sampled on each rounded corner."""

    def __init__(
        self,
        seed: int | np.random.Generator | None = None,
        noise: float = 0.1,
        route: int | None = None,
        layout: ObstacleLayout = LAYOUT,
        gain: float = 0.6,
        switch_radius: float = 0.2,
    ) -> None:
        if gain <= 0.0 or switch_radius < 0.0:
            raise ScorePolicyError("ObstacleExpert: gain must be positive and switch_radius non-negative")
        self.rng = np.random.default_rng(seed)
        self.noise = noise
        self.fixed_route = route
        self.layout = layout
        self.gain = gain
        self.switch_radius = switch_radius
        self.route = -1
        self._waypoints: list[tuple[float, float]] = []
        self._path: list[tuple[float, float]] = []
        self._arc: list[float] = []
        self._segment = 0
        self._progress = 0.0
        self._last: tuple[float, float] | None = None

    def reset(self, route: int | None = None) -> int:
        """Start a new episode on `route` (default: the fixed route, else each gap uniformly); returns it."""
        route = self.fixed_route if route is None else route
        if route is None:
            route = self.layout.route_of([int(self.rng.integers(n)) for n in self.layout.n_gaps])
        self.route = route
        self._waypoints = self.layout.route_waypoints(route)
        self._path = []
        self._arc = []
        self._segment = 0
        self._progress = 0.0
        self._last = None
        return route

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The action (2,) float32 in [-1, 1] for the current observation (agent position)."""
        x, y = float(obs[0]), float(obs[1])
        last = self._last
        jumped = last is not None and abs(x - last[0]) + abs(y - last[1]) > 3 * self.layout.max_step
        if not self._waypoints or jumped:
            self.reset()
        self._last = (x, y)
        if not self._path:
            self._path = self.smooth_path((x, y))
            self._arc = [0.0]
            for (x0, y0), (x1, y1) in itertools.pairwise(self._path):
                self._arc.append(self._arc[-1] + math.hypot(x1 - x0, y1 - y0))
        self._project(x, y)
        px, py = self._point_at(self._progress)
        ax, ay = self._point_at(self._progress + self.layout.max_step)
        tx, ty = ax - px, ay - py
        norm = math.hypot(tx, ty)
        k = self.gain / self.layout.max_step
        vx, vy = (
            (tx / norm if norm > 0.0 else 0.0) + k * (px - x),
            (ty / norm if norm > 0.0 else 1.0) + k * (py - y),
        )
        speed = math.hypot(vx, vy)
        action = np.array((vx / speed, vy / speed))
        if self.noise > 0.0:
            action += self.noise * self.rng.standard_normal(2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def smooth_path(self, start: tuple[float, float]) -> list[tuple[float, float]]:
        """The current route's path from `start` as a dense polyline (corners rounded, see the class doc)."""
        if not self._waypoints:
            self.reset()
        points = [start, *self._waypoints]
        path = [start]
        n = self._CORNER_SAMPLES
        last = len(points) - 3
        for i, (prev, w, nxt) in enumerate(zip(points, points[1:], points[2:])):
            u, lu = _unit(w[0] - prev[0], w[1] - prev[1])
            v, lv = _unit(nxt[0] - w[0], nxt[1] - w[1])
            b, lb = _unit(u[0] + v[0], u[1] + v[1])
            # Two corners share a line half each (the start has no corner); the last line runs on
            # past the goal line, so the final corner is never cut short.
            a_in = min(self.switch_radius, (0.5 if i > 0 else 0.9) * lu)
            a_out = min(self.switch_radius, 0.5 * lv if i < last else math.inf)
            if a_in <= 0.0 or a_out <= 0.0 or lb < 1e-9:
                path.append(w)
                continue
            # Two cubic Hermite arcs: from W - a·u (heading u) to W (heading b, the bisector of u and
            # v) and on to W + a·v (heading v), so the path crosses the gap centre square to the turn.
            p0 = (w[0] - a_in * u[0], w[1] - a_in * u[1])
            p3 = (w[0] + a_out * v[0], w[1] + a_out * v[1])
            path += _bezier(p0, _along(p0, u, a_in / 3), _along(w, b, -a_in / 3), w, n // 2)[1:]
            path += _bezier(w, _along(w, b, a_out / 3), _along(p3, v, -a_out / 3), p3, n // 2)[1:]
        if math.dist(points[-2], points[-1]) > self.switch_radius:
            path.append(points[-1])
        return path

    def _project(self, x: float, y: float) -> None:
        """Advance the progress (arc length) to the agent's nearest point on the next 3 steps of path."""
        best_d2, best_s, best_k = math.inf, self._progress, self._segment
        horizon = self._progress + 3 * self.layout.max_step
        k = self._segment
        while k < len(self._path) - 1 and self._arc[k] <= horizon:
            (x0, y0), (x1, y1) = self._path[k], self._path[k + 1]
            sx, sy = x1 - x0, y1 - y0
            seg2 = sx * sx + sy * sy
            t = ((x - x0) * sx + (y - y0) * sy) / seg2 if seg2 > 0.0 else 0.0
            t = 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)
            ex, ey = x0 + t * sx - x, y0 + t * sy - y
            d2 = ex * ex + ey * ey
            if d2 < best_d2:
                best_d2, best_s, best_k = d2, self._arc[k] + t * math.sqrt(seg2), k
            k += 1
        if best_s > self._progress:
            self._progress, self._segment = best_s, best_k

    def _point_at(self, s: float) -> tuple[float, float]:
        """The point of the path at arc length s (clamped to the path; extended straight past its end)."""
        k = self._segment
        while k < len(self._path) - 2 and self._arc[k + 1] < s:
            k += 1
        (x0, y0), (x1, y1) = self._path[k], self._path[k + 1]
        length = self._arc[k + 1] - self._arc[k]
        t = max(0.0, (s - self._arc[k]) / length) if length > 0.0 else 1.0
        return x0 + t * (x1 - x0), y0 + t * (y1 - y0)


def obstacle_expert(
    seed: int | np.random.Generator | None = None, noise: float = 0.1, route: int | None = None
) -> ObstacleExpert:
    """A scripted expert policy for the default field (see `ObstacleExpert`)."""
    return ObstacleExpert(seed=seed, noise=noise, route=route)


def run_obstacle_episode(
    env: ObstacleEnv, expert: ObstacleExpert, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """One expert episode: observations (T, 2), actions (T, 2) and the T step infos."""
    obs, _ = env.reset(seed=seed)
    expert.reset()
    observations, actions, infos = [], [], []
    done = False
    while not done:
        action = expert(obs)
        observations.append(obs)
        actions.append(action)
        obs, _, terminated, truncated, info = env.step(action)
        infos.append(info)
        done = terminated or truncated
    return np.stack(observations), np.stack(actions), infos


def generate_obstacle_demos(n_episodes: int, seed: int, noise: float = 0.1) -> Episodes:
    """`n_episodes` successful expert demonstrations (keys obs, action, route); deterministic in seed."""
    if n_episodes < 1:
        raise ScorePolicyError(f"generate_obstacle_demos: n_episodes must be >= 1, got {n_episodes}")
    rng = np.random.default_rng(seed)
    env = ObstacleEnv()
    expert = ObstacleExpert(seed=rng, noise=noise)
    obs_parts: list[np.ndarray] = []
    act_parts: list[np.ndarray] = []
    routes: list[int] = []
    max_attempts = 10 * n_episodes + 100
    for _ in range(max_attempts):
        obs, act, infos = run_obstacle_episode(env, expert, seed=int(rng.integers(2**31 - 1)))
        if infos[-1]["success"]:
            obs_parts.append(obs)
            act_parts.append(act)
            routes.append(int(infos[-1]["route"]))
            if len(routes) == n_episodes:
                break
    else:
        raise RuntimeError(f"obstacle expert succeeded in only {len(routes)} of {max_attempts} episodes")
    lengths = np.array([len(o) for o in obs_parts], dtype=np.int64)
    return Episodes(
        data={
            "obs": np.concatenate(obs_parts).astype(np.float32),
            "action": np.concatenate(act_parts).astype(np.float32),
            "route": np.repeat(np.array(routes, dtype=np.int64), lengths),
        },
        episode_ends=np.cumsum(lengths),
        source=f"generate_obstacle_demos(n_episodes={n_episodes}, seed={seed})",
        attrs={"task": "obstacles", "seed": seed, "noise": noise, "max_step": LAYOUT.max_step},
    )


def route_entropy(routes: Sequence[int], n_routes: int = LAYOUT.n_routes) -> float:
    """Behaviour entropy −Σ p log_n p of the empirical route distribution (0 for no routes)."""
    return behaviour_entropy(routes, n_routes)


def obstacle_episode_metrics(infos: StepInfos) -> dict[str, float]:
    """Per-episode record: success (0/1), final route (or -1) and collided (0/1)."""
    if not infos:
        return {"success": 0.0, "route": -1.0, "collided": 0.0}
    return {
        "success": float(any(bool(i.get("success", False)) for i in infos)),
        "route": float(infos[-1].get("route", -1)),
        "collided": float(any(bool(i.get("collision", False)) for i in infos)),
    }


def obstacle_aggregate_metrics(records: list[dict[str, Any]]) -> dict[str, float]:
    """Distinct routes and route entropy (log base 24) over the successful episodes."""
    routes = [int(r["route"]) for r in records if r.get("success") and int(r.get("route", -1)) >= 0]
    return {"n_routes": float(len(set(routes))), "route_entropy": route_entropy(routes)}


def _make_env(render_mode: str | None) -> gym.Env:
    return ObstacleEnv(render_mode=render_mode)


def _field(episodes: Episodes, key: str) -> np.ndarray:
    if key not in episodes.data:
        raise ScorePolicyError(
            f"{episodes.source or 'episodes'}: the obstacles task needs field '{key}' of shape (T, 2); "
            f"found {sorted(episodes.data)}"
        )
    return np.asarray(episodes.data[key], dtype=np.float32)


OBSTACLE_TASK = Task(
    name="obstacles",
    obs_dim=2,
    action_dim=2,
    max_steps=LAYOUT.max_episode_steps,
    default_seed=0,
    make_env=_make_env,
    dataset_obs=lambda episodes: _field(episodes, "obs"),
    dataset_actions=lambda episodes: _field(episodes, "action"),
    episode_metrics=obstacle_episode_metrics,
    aggregate_metrics=obstacle_aggregate_metrics,
    behaviour_key="route",
    n_behaviours=LAYOUT.n_routes,
    behaviour_names=tuple("-".join(map(str, LAYOUT.gaps_of(r))) for r in range(LAYOUT.n_routes)),
    behaviour_prior=tuple([1.0 / LAYOUT.n_routes] * LAYOUT.n_routes),
)
"""The bundled 2-D obstacle-avoidance task (24 routes)."""
