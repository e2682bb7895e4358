"""gym-pusht's PushTEnv with the same physics and the same arithmetic, 2-3 times as fast per step.

Two costs dominate gym-pusht's `step` on CPU: the PD controller's ten sub-steps are computed with
numpy arrays of two elements, and the coverage rebuilds both T shapes (goal and block) as shapely
polygons and intersects them with GEOS at every step. Here the controller runs on Python floats in the
same order of operations (IEEE doubles either way, so every state is bit-identical) and the coverage is
the exact area of the intersection of two unions of two rectangles: the rectangles of one T do not
overlap, so it is the sum of the four rectangle-rectangle intersections, each a convex polygon clip
(Sutherland-Hodgman). It agrees with shapely's to ~1e-14 (tested to 1e-12); shapely's own result varies
in its last bit from one process to the next, as gym-pusht sums over a set of shapes whose order follows
object addresses. Contacts are counted with chipmunk's own counter instead of building Python
contact-point objects.

Because it subclasses gym-pusht's internals, it is tied to the gym-pusht version its parity test ran
against (`TESTED_GYM_PUSHT`, pinned in the `pusht` extra): constructing it under another version is a
one-line error, and `pusht_env_class` falls back to gym-pusht's own PushTEnv with a warning.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from typing import Any

import numpy as np
from gym_pusht.envs.pusht import PushTEnv
from pymunk._chipmunk import lib as _chipmunk

from scorepolicy.errors import ScorePolicyError

Point = tuple[float, float]
TESTED_GYM_PUSHT = "0.1.8"
"""The gym-pusht version whose PushTEnv internals FastPushTEnv reproduces (its parity test's)."""


def installed_gym_pusht_version() -> str:
    """The installed gym-pusht distribution's version ("unknown" when its metadata is missing)."""
    try:
        return importlib.metadata.version("gym-pusht")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def check_gym_pusht_version() -> None:
    """A one-line ScorePolicyError unless the installed gym-pusht is the version FastPushTEnv was tested on."""
    installed = installed_gym_pusht_version()
    if installed != TESTED_GYM_PUSHT:
        raise ScorePolicyError(
            f"gym-pusht {installed} is installed, but FastPushTEnv reimplements internals of gym-pusht "
            f"{TESTED_GYM_PUSHT}: pip install 'gym-pusht=={TESTED_GYM_PUSHT}', or use the plain env "
            "(make_pusht_env(fast=False))"
        )


def pusht_env_class(fast: bool = True) -> type[PushTEnv]:
    """FastPushTEnv when `fast` and the tested gym-pusht is installed; gym-pusht's PushTEnv otherwise
    (with a warning when `fast` was asked for under another gym-pusht version)."""
    if not fast:
        return PushTEnv
    try:
        check_gym_pusht_version()
    except ScorePolicyError as exc:
        warnings.warn(f"{exc}; using gym-pusht's own (slower) PushTEnv", RuntimeWarning, stacklevel=2)
        return PushTEnv
    return FastPushTEnv


def clip_convex(subject: list[Point], clipper: list[Point]) -> list[Point]:
    """The part of polygon `subject` inside convex polygon `clipper` (Sutherland-Hodgman; both
    counter-clockwise). Empty when they do not overlap."""
    out = subject
    for i in range(len(clipper)):
        if not out:
            break
        (ax, ay), (bx, by) = clipper[i - 1], clipper[i]
        ex, ey = bx - ax, by - ay
        inp, out = out, []
        px, py = inp[-1]
        p_side = ex * (py - ay) - ey * (px - ax)
        for qx, qy in inp:
            q_side = ex * (qy - ay) - ey * (qx - ax)
            if (q_side >= 0) != (p_side >= 0):  # the edge p -> q crosses the clipping line
                t = p_side / (p_side - q_side)
                out.append((px + t * (qx - px), py + t * (qy - py)))
            if q_side >= 0:
                out.append((qx, qy))
            px, py, p_side = qx, qy, q_side
    return out


def polygon_area(poly: list[Point]) -> float:
    """Signed area (shoelace): positive for counter-clockwise vertices."""
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(poly[-1:] + poly[:-1], poly))


class FastPushTEnv(PushTEnv):
    """PushTEnv whose `step` and coverage are computed faster with identical results."""

    _goal: list[list[Point]]
    _goal_area: float
    _local: list[list[Any]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """PushTEnv's constructor, after checking that gym-pusht is the version this class reproduces."""
        check_gym_pusht_version()
        super().__init__(*args, **kwargs)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        """PushTEnv.reset, then the T's rectangles in its own frame and in the goal pose (set in `_setup`)."""
        out = super().reset(seed=seed, options=options)
        self._local = [list(shape.get_vertices()) for shape in self._block_shapes]
        self._goal = self._rectangles(self.get_goal_pose_body(self.goal_pose))
        self._goal_area = sum(polygon_area(rect) for rect in self._goal)
        return out

    def _rectangles(self, body: Any) -> list[list[Point]]:
        """The T's two rectangles in the world frame of `body` (counter-clockwise, as pymunk keeps them)."""
        return [[tuple(body.local_to_world(v)) for v in rect] for rect in self._local]

    def _handle_collision(self, arbiter: Any, space: Any, data: Any) -> None:
        """Count the contact points (PushTEnv builds the whole contact point set to take its length)."""
        self.n_contact_points += int(_chipmunk.cpArbiterGetCount(arbiter._arbiter))

    def _get_coverage(self) -> float:
        """Fraction of the goal T covered by the block: the four rectangle-rectangle overlaps, summed."""
        block = self._rectangles(self.block)
        overlap = sum(polygon_area(clip_convex(b, g)) for g in self._goal for b in block)
        return overlap / self._goal_area

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """PushTEnv.step: ten PD-controlled physics sub-steps towards `action`, then coverage and reward."""
        self.n_contact_points = 0
        n_steps = int(1 / (self.dt * self.control_hz))
        self._last_action = action
        target_x, target_y = float(action[0]), float(action[1])
        agent, space, dt, k_p, k_v = self.agent, self.space, self.dt, self.k_p, self.k_v
        for _ in range(n_steps):
            px, py = agent.position
            vx, vy = agent.velocity
            # PushTEnv: acceleration = k_p * (action - position) + k_v * (Vec2d(0, 0) - velocity)
            ax = k_p * (target_x - px) + k_v * (0 - vx)
            ay = k_p * (target_y - py) + k_v * (0 - vy)
            agent.velocity = (vx + ax * dt, vy + ay * dt)
            space.step(dt)
        coverage = self._get_coverage()
        reward = float(np.clip(coverage / self.success_threshold, 0.0, 1.0))
        terminated = is_success = coverage > self.success_threshold
        info = self._get_info()
        info["is_success"] = is_success
        info["coverage"] = coverage
        return self.get_obs(), reward, terminated, False, info
