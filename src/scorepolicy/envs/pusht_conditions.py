"""Push-T under the perturbation conditions (see `envs/conditions.py`); scales are in pixels.

- obs-noise (scale σ px): every observation the policy sees gets N(0, σ²) on the four positions and
  N(0, (σ/60)²) radians on the block angle (the rotation that moves the end of the T's bar, 60 px from
  the block origin, by σ px), then sin/cos of the noisy angle. `pusht-keypoints` (the same env with
  DP's 20-d keypoint observation, same block-shift and unseen-start) gets N(0, σ²) on each number.
- block-shift (scale d px): after the set step the block's centre of gravity moves d px straight away from
  the goal pose's, and the block turns by d/60 rad away from the goal angle (both undo progress). When
  that pose would cut into a wall or the agent, the direction turns by ±30°, ±60°, ... (and the rotation
  flips) until it fits; if nothing fits, the block is left where it is.
- unseen-start (scale d px): the demonstrated region is where gym-pusht's reset puts the block. The
  reset draws the block origin from integers [100, 400)² at angle 0 and then sets the angle, which
  pymunk turns about the centre of gravity (45 px up the T's axis), so the centre of gravity is uniform
  on [100, 400) × [145, 445) and the origin is not. All 206 episodes of the recorded Push-T data start
  with the centre of gravity in [100, 399] × [146, 444] and never leave [90.8, 399] × [145.8, 444].
  An unseen start puts the centre of gravity at least d px outside that box (by its farthest axis), at
  a uniform angle, with the whole T at least 3 px inside the walls; the agent starts as in gym-pusht
  (uniform in [50, 450)²), clear of the T by 5 px. d can be at most about 55 px (the field ends).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import gymnasium as gym
import numpy as np

from scorepolicy.envs.conditions import ConditionModel
from scorepolicy.envs.pusht import _T_BOXES, AGENT_RADIUS, PushTStateEnv
from scorepolicy.errors import ScorePolicyError

COG_OFFSET = 45.0
"""The block's centre of gravity sits this many pixels along the T's axis from its origin."""
DEMO_COG_BOX = (100.0, 400.0, 145.0, 445.0)
"""(x_min, x_max, y_min, y_max) of the block's centre of gravity at gym-pusht's resets (the demos' starts)."""
GOAL_POSE = (256.0, 256.0, math.pi / 4)
"""gym-pusht's goal pose of the block (origin x, y, angle)."""
ANGLE_ARM = 60.0
"""Pixels between the block origin and the end of the bar: converts a scale in pixels to radians."""
WALL_LOW, WALL_HIGH = 10.0, 501.0
"""The T stays inside these bounds: the walls' inner faces (7 and 504) with 3 px to spare."""
AGENT_CLEARANCE = 5.0
"""Pixels kept between the agent's disc and the T when placing either."""
_MAX_TRIES = 20_000


def _rotate(angle: float, x: float, y: float) -> tuple[float, float]:
    c, s = math.cos(angle), math.sin(angle)
    return c * x - s * y, s * x + c * y


def block_cog(state: np.ndarray) -> tuple[float, float]:
    """The block's centre of gravity (pixels) for a raw state [ax, ay, bx, by, angle]."""
    dx, dy = _rotate(float(state[4]), 0.0, COG_OFFSET)
    return float(state[2]) + dx, float(state[3]) + dy


def origin_from_cog(cog: tuple[float, float], angle: float) -> tuple[float, float]:
    """The block origin whose centre of gravity is at `cog` for this angle."""
    dx, dy = _rotate(angle, 0.0, COG_OFFSET)
    return cog[0] - dx, cog[1] - dy


def outside_demo_region(cog: tuple[float, float]) -> float:
    """How far (pixels, along the farthest axis) a centre of gravity lies outside DEMO_COG_BOX (≤ 0: inside)."""
    x0, x1, y0, y1 = DEMO_COG_BOX
    return max(x0 - cog[0], cog[0] - x1, y0 - cog[1], cog[1] - y1)


def block_fits(origin: tuple[float, float], angle: float, agent: tuple[float, float]) -> bool:
    """Whether a block pose keeps the whole T inside the walls and clear of the agent's disc."""
    for x0, x1, y0, y1 in _T_BOXES:
        for vx, vy in ((x0, y0), (x0, y1), (x1, y0), (x1, y1)):
            dx, dy = _rotate(angle, vx, vy)
            if not (WALL_LOW <= origin[0] + dx <= WALL_HIGH and WALL_LOW <= origin[1] + dy <= WALL_HIGH):
                return False
    # the agent in the block's frame, then its distance to each of the T's two boxes
    lx, ly = _rotate(-angle, agent[0] - origin[0], agent[1] - origin[1])
    reach = AGENT_RADIUS + AGENT_CLEARANCE
    for x0, x1, y0, y1 in _T_BOXES:
        ex, ey = max(x0 - lx, 0.0, lx - x1), max(y0 - ly, 0.0, ly - y1)
        if ex * ex + ey * ey < reach * reach:
            return False
    return True


def pusht_noisy_obs(obs: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """The 6-d observation with N(0, scale²) px on the positions and N(0, (scale/60)²) rad on the angle."""
    out = np.array(obs, dtype=np.float64)
    out[:4] += rng.normal(0.0, scale, 4)
    angle = math.atan2(out[4], out[5]) + float(rng.normal(0.0, scale / ANGLE_ARM))
    out[4], out[5] = math.sin(angle), math.cos(angle)
    return out.astype(np.float32)


def keypoint_noisy_obs(obs: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """pusht-keypoints: N(0, scale²) px on each of the 20 numbers (agent and 9 keypoints, independently)."""
    out = np.asarray(obs, dtype=np.float64)
    return (out + rng.normal(0.0, scale, out.shape)).astype(np.float32)


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def shifted_block_pose(
    state: np.ndarray, rng: np.random.Generator, scale: float
) -> tuple[tuple[float, float], float] | None:
    """The block pose (origin, angle) block-shift moves a raw state's block to; None when none fits."""
    cog = block_cog(state)
    goal_cog = block_cog(np.array([0.0, 0.0, GOAL_POSE[0], GOAL_POSE[1], GOAL_POSE[2]]))
    away = math.atan2(cog[1] - goal_cog[1], cog[0] - goal_cog[0])
    if math.hypot(cog[0] - goal_cog[0], cog[1] - goal_cog[1]) < 1.0:
        away = float(rng.uniform(-math.pi, math.pi))
    angle = float(state[4])
    turn = math.copysign(scale / ANGLE_ARM, _wrap(angle - GOAL_POSE[2]) or 1.0)
    agent = (float(state[0]), float(state[1]))
    for k in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6):
        heading = away + k * math.pi / 6
        new_cog = (cog[0] + scale * math.cos(heading), cog[1] + scale * math.sin(heading))
        for rot in (turn, -turn):
            new_angle = angle + rot
            origin = origin_from_cog(new_cog, new_angle)
            if block_fits(origin, new_angle, agent):
                return origin, new_angle
    return None


def pusht_shift(env: gym.Env[Any, Any], rng: np.random.Generator, scale: float) -> np.ndarray | None:
    """Move the block of a Push-T env as `shifted_block_pose` says (at rest); the env's new observation."""
    if not isinstance(env, PushTStateEnv):
        raise ScorePolicyError(f"Push-T block-shift needs a PushTStateEnv, got {type(env).__name__}")
    base: Any = env.unwrapped
    pose = shifted_block_pose(env.raw_state(), rng, scale)
    if pose is None:
        return None
    (ox, oy), angle = pose
    block = base.block
    block.angle = angle  # pymunk turns a body about its centre of gravity: set the angle, then the origin
    block.position = (ox, oy)
    block.velocity = (0.0, 0.0)
    block.angular_velocity = 0.0
    base.space.reindex_shapes_for_body(block)
    return env.obs_from_state(env.raw_state())


def pusht_unseen_start(rng: np.random.Generator, scale: float) -> dict[str, Any]:
    """Reset options (`reset_to_state`) for a start whose block lies `scale` px outside the demo region."""
    for _ in range(_MAX_TRIES):
        cog = (float(rng.uniform(WALL_LOW, WALL_HIGH)), float(rng.uniform(WALL_LOW, WALL_HIGH)))
        angle = float(rng.uniform(-math.pi, math.pi))
        agent = (float(rng.uniform(50.0, 450.0)), float(rng.uniform(50.0, 450.0)))
        origin = origin_from_cog(cog, angle)
        if outside_demo_region(cog) >= scale and block_fits(origin, angle, agent):
            return {"reset_to_state": np.array([*agent, *origin, angle % (2 * math.pi)], dtype=np.float64)}
    raise ScorePolicyError(
        f"condition 'unseen-start': no Push-T start lies {scale:g} px outside the demonstrated region "
        "inside the field; use --condition-scale of at most about 55"
    )


PUSHT_CONDITIONS = ConditionModel(
    task="pusht",
    units="pixels",
    default_scale={"obs-noise": 3.0, "block-shift": 80.0, "unseen-start": 30.0},
    default_shift_step=60,
    noisy=pusht_noisy_obs,
    shift=pusht_shift,
    unseen_start=pusht_unseen_start,
)
"""Push-T's conditions. The defaults (3 px noise, an 80 px / 1.33 rad shift after step 60, starts 30 px out)
each cut the 40 k-step NFE-3 policy's success on seeds 100000..100049 from 46% to 16-24% (README)."""

PUSHT_KEYPOINTS_CONDITIONS = dataclasses.replace(
    PUSHT_CONDITIONS, task="pusht-keypoints", noisy=keypoint_noisy_obs
)
"""pusht-keypoints: Push-T's conditions; obs-noise perturbs each of the 20 observed numbers independently."""
