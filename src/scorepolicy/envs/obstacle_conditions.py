"""The obstacle task under the perturbation conditions (see `envs/conditions.py`); scales are in units of
the unit-square field (one env step moves the agent at most 0.03).

- obs-noise (scale σ): N(0, σ²) on both coordinates of every observation the policy sees.
- block-shift (scale d): there is no block, so the agent is displaced: after the set step it jumps d
  sideways, towards the field's centre line and across it (into the other half's gaps), or away from it
  when that lands outside [0.01, 0.99] or within 0.01 of an obstacle; if neither fits it stays. Its
  height is kept, so the rows it has crossed (and its route label) stay valid.
- unseen-start (scale d): the demonstrated region is the reset box, the nominal start ± its jitter
  (x in [0.47, 0.53], y in [0.03, 0.05]); every demonstration starts there (`generate_obstacle_demos`
  resets the same env). An unseen start keeps y in that band and puts x uniformly in
  [0.02, 0.47 − d] ∪ [0.53 + d, 0.98], at least d beside the box (d at most 0.45).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from scorepolicy.envs.conditions import ConditionModel
from scorepolicy.envs.obstacles import LAYOUT, ObstacleEnv
from scorepolicy.errors import ScorePolicyError

FIELD_MARGIN = 0.01
"""Displaced or unseen starts stay this far inside the field and away from every obstacle's edge."""
_START_EDGE = 0.02
"""Unseen starts lie in [0.02, 0.98] in x."""


def demo_start_box() -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) of the demonstrated starts: the layout's start ± its jitter."""
    (sx, sy), (jx, jy) = LAYOUT.start, LAYOUT.start_jitter
    return sx - jx, sx + jx, sy - jy, sy + jy


def obstacle_noisy_obs(obs: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """The observation with N(0, scale²) added to both coordinates."""
    return (np.asarray(obs, dtype=np.float64) + rng.normal(0.0, scale, 2)).astype(np.float32)


def _free(x: float, y: float) -> bool:
    if not FIELD_MARGIN <= x <= 1.0 - FIELD_MARGIN:
        return False
    return all(math.hypot(x - cx, y - cy) >= r + FIELD_MARGIN for cx, cy, r in LAYOUT.obstacles)


def obstacle_shift(env: gym.Env[Any, Any], rng: np.random.Generator, scale: float) -> np.ndarray | None:
    """Displace the agent `scale` sideways (across the centre line first); the new observation, or None."""
    base = env.unwrapped
    if not isinstance(base, ObstacleEnv):
        raise ScorePolicyError(f"obstacle block-shift needs an ObstacleEnv, got {type(base).__name__}")
    x, y = base.agent
    towards = 1.0 if x < 0.5 else -1.0
    for direction in (towards, -towards):
        new_x = x + direction * scale
        if _free(new_x, y):
            return base.move_agent(new_x)
    return None


def obstacle_unseen_start(rng: np.random.Generator, scale: float) -> dict[str, Any]:
    """Reset options (`start`) for a start at least `scale` beside the demonstrated start box."""
    x0, x1, y0, y1 = demo_start_box()
    left = (_START_EDGE, x0 - scale)
    right = (x1 + scale, 1.0 - _START_EDGE)
    widths = [max(0.0, hi - lo) for lo, hi in (left, right)]
    if sum(widths) <= 0.0:
        raise ScorePolicyError(
            f"condition 'unseen-start': no obstacle-task start lies {scale:g} beside the demonstrated "
            f"region; use --condition-scale of at most {x0 - _START_EDGE:.2f}"
        )
    u = float(rng.uniform(0.0, sum(widths)))
    x = left[0] + u if u < widths[0] else right[0] + (u - widths[0])
    return {"start": (x, float(rng.uniform(y0, y1)))}


OBSTACLE_CONDITIONS = ConditionModel(
    task="obstacles",
    units="unit-square field",
    default_scale={"obs-noise": 0.03, "block-shift": 0.2, "unseen-start": 0.2},
    default_shift_step=30,
    noisy=obstacle_noisy_obs,
    shift=obstacle_shift,
    unseen_start=obstacle_unseen_start,
)
"""The obstacle task's conditions. The defaults (noise 0.03, a 0.2 jump after step 30 — between rows 2 and
3 —, starts 0.2 beside the box) cut the 4,000-step demo policy's success on seeds 0..99 from 82% to
32-53% (README); the shift was tuned on those seeds (0.1-0.3 after steps 15-35 gave 52-81%)."""
