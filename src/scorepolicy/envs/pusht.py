"""Push-T (gym-pusht) as a `Task`: a 6-d state observation, exact reset to recorded states, DP metrics.

Observation: `[agent_x, agent_y, block_x, block_y, sin(angle), cos(angle)]` in pixels (float32). The
sin/cos pair keeps the block angle continuous where the raw state wraps it at 2*pi.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from scorepolicy.core.episodes import Episodes
from scorepolicy.core.task import StepInfos, Task
from scorepolicy.errors import ScorePolicyError

# pygame (imported by gym_pusht) must never try to open a display: rendering is off-screen only.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

PUSHT_MAX_STEPS = 300
"""gym-pusht's registered episode limit (gym_pusht/PushT-v0)."""
SUCCESS_COVERAGE = 0.95
"""Diffusion Policy's success threshold on the block's goal coverage."""
OBS_DIM = 6
SNAP_TOLERANCE_PX = 1e-4
"""Above float32 rounding at 512 px (3e-5), far below anything physically meaningful."""
_MAX_PIXELS = 512.0
ObsFromState = Callable[[np.ndarray], np.ndarray]
"""Maps raw states (..., 5) [ax, ay, bx, by, angle] to a task's float32 observations."""


# The T in the block's frame (origin at the block position of the state, as gym-pusht's
# body.local_to_world places its vertices): a bar 120 × 30 and a stem 30 × 90, as
# (x_min, x_max, y_min, y_max) of two boxes.
_T_BOXES = ((-60.0, 60.0, 0.0, 30.0), (-15.0, 15.0, 30.0, 120.0))
_T_SPLIT_Y = 60.0
"""Half-way along the T's length (y from 0 to 120): the bar half and the stem half."""
AGENT_RADIUS = 15.0
APPROACH_MARGIN = 5.0
"""The agent 'reaches' the T when its edge comes within this many pixels of the T."""
APPROACH_SIDES = ("bar-left", "bar-right", "stem-left", "stem-right")
"""Push-T behaviours: the quarter of the T (bar or stem half, left or right of its axis) the agent
reaches first."""


def pusht_approach_side(state: np.ndarray) -> int:
    """Which quarter of the T an agent at this raw state [ax, ay, bx, by, angle] is next to (index into
    APPROACH_SIDES), or −1 if it is not within APPROACH_MARGIN of the T."""
    ax, ay, bx, by, angle = (float(v) for v in state[:5])
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = ax - bx, ay - by
    x, y = c * dx + s * dy, -s * dx + c * dy  # the agent in the block's frame
    reach = AGENT_RADIUS + APPROACH_MARGIN
    for x0, x1, y0, y1 in _T_BOXES:
        ex, ey = max(x0 - x, 0.0, x - x1), max(y0 - y, 0.0, y - y1)
        if ex * ex + ey * ey <= reach * reach:
            return 2 * int(y >= _T_SPLIT_Y) + int(x >= 0.0)
    return -1


def pusht_first_approach(states: np.ndarray) -> int:
    """The approach side of the first state (T, 5) at which the agent reaches the T, −1 if it never does."""
    for state in np.asarray(states, dtype=np.float64).reshape(-1, 5):
        side = pusht_approach_side(state)
        if side >= 0:
            return side
    return -1


def pusht_obs_from_state(state: np.ndarray) -> np.ndarray:
    """Map raw states (..., 5) [ax, ay, bx, by, angle] to observations (..., 6) with sin/cos of the angle."""
    s = np.asarray(state, dtype=np.float64)
    if s.shape[-1:] != (5,):
        raise ScorePolicyError(f"Push-T state must have 5 values in its last axis, got shape {s.shape}")
    angle = s[..., 4:5]
    return np.concatenate([s[..., :4], np.sin(angle), np.cos(angle)], axis=-1).astype(np.float32)


def pusht_observation_space() -> spaces.Box:
    """The Box the 6-d Push-T observation lives in (pixels for positions, [-1, 1] for sin/cos)."""
    low = np.array([0.0, 0.0, 0.0, 0.0, -1.0, -1.0], dtype=np.float32)
    high = np.array([_MAX_PIXELS] * 4 + [1.0, 1.0], dtype=np.float32)
    return spaces.Box(low=low, high=high, dtype=np.float32)


class PushTStateEnv(gym.Wrapper[np.ndarray, np.ndarray, np.ndarray, np.ndarray]):
    """gym-pusht with the 6-d observation (or another map of the raw state, `obs_from_state`) and a
    `reset_to_state` that lands exactly on the given state.

    gym-pusht sets the block's position before its angle, and pymunk turns the body about its centre of
    gravity, so the block ends up shifted by an angle-dependent offset. The wrapper resets once,
    measures that offset and resets again with it subtracted.

    With `snap_to_pixel_grid` (default), a corrected block position within `SNAP_TOLERANCE_PX` of whole
    pixels is rounded to them: the recorded Push-T episodes start from integer positions passed through
    that same quirk, so this recovers the float64 state the recording came from (float32 storage loses
    ~1e-5 px), which keeps chaotic contact-rich replays on track (worst of 206 episodes: 0.022 px with
    snapping, 0.17 px without). The state reached still matches the requested one to float32 precision.
    """

    def __init__(
        self,
        env: gym.Env[np.ndarray, np.ndarray],
        snap_to_pixel_grid: bool = True,
        obs_from_state: ObsFromState = pusht_obs_from_state,
        observation_space: spaces.Box | None = None,
    ) -> None:
        super().__init__(env)
        self.observation_space = observation_space or pusht_observation_space()
        self.obs_from_state = obs_from_state
        self.snap_to_pixel_grid = snap_to_pixel_grid
        self._approach = -1

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset (randomly from `seed`, or exactly to `options["reset_to_state"]`, a recorded 5-d state)."""
        target = None if options is None else options.get("reset_to_state")
        self._approach = -1
        if target is None:
            raw, info = self.env.reset(seed=seed, options=options)
            return self.obs_from_state(raw), info
        wanted = np.asarray(target, dtype=np.float64)
        if wanted.shape != (5,) or not np.all(np.isfinite(wanted)):
            raise ScorePolicyError(
                "reset_to_state must be 5 finite numbers [agent_x, agent_y, block_x, block_y, angle], "
                f"got {target!r}"
            )
        opts = dict(options or {})
        raw, _ = self.env.reset(seed=seed, options={**opts, "reset_to_state": wanted})
        corrected = wanted.copy()
        corrected[2:4] -= np.asarray(raw[2:4], dtype=np.float64) - wanted[2:4]
        grid = np.round(corrected[2:4])
        if self.snap_to_pixel_grid and np.max(np.abs(corrected[2:4] - grid)) < SNAP_TOLERANCE_PX:
            corrected[2:4] = grid
        raw, info = self.env.reset(seed=seed, options={**opts, "reset_to_state": corrected})
        self._approach = -1
        return self.obs_from_state(raw), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Move the agent towards the target position `action` (pixels) for one 10 Hz control step.

        The info gains `approach_side`: the quarter of the T the agent reached first (−1 until then).
        """
        raw, reward, terminated, truncated, info = self.env.step(action)
        if self._approach < 0:
            self._approach = pusht_approach_side(raw)
        info["approach_side"] = self._approach
        return self.obs_from_state(raw), reward, terminated, truncated, info

    def raw_state(self) -> np.ndarray:
        """The simulator's current 5-d state [ax, ay, bx, by, angle mod 2*pi] (float64)."""
        base: Any = self.env.unwrapped
        return np.asarray(base.get_obs(), dtype=np.float64)


def make_pusht_env(
    render_mode: str | None = None,
    fast: bool = True,
    obs_from_state: ObsFromState = pusht_obs_from_state,
    observation_space: spaces.Box | None = None,
) -> PushTStateEnv:
    """A Push-T env (300-step limit) returning 6-d observations (or `obs_from_state` of the raw state, in
    `observation_space`); render_mode None or "rgb_array".

    `fast` (default) steps gym-pusht's physics through `FastPushTEnv`: the same states and infos
    (coverage to ~1e-14), 2-3.5 times the steps per second; False uses gym-pusht's own PushTEnv, as does
    `fast` (with a warning) when the installed gym-pusht is not the version FastPushTEnv was tested on.
    """
    try:
        from scorepolicy.envs.pusht_fast import pusht_env_class  # imports gym-pusht
    except ImportError as exc:
        raise ScorePolicyError(
            "the Push-T task needs the gym-pusht package; install it with: pip install 'scorepolicy[pusht]'"
        ) from exc
    if render_mode not in (None, "rgb_array"):
        raise ScorePolicyError(f"Push-T render_mode must be None or 'rgb_array', got {render_mode!r}")
    base = pusht_env_class(fast)(obs_type="state", render_mode=render_mode)
    limited = gym.wrappers.TimeLimit(base, max_episode_steps=PUSHT_MAX_STEPS)
    return PushTStateEnv(limited, obs_from_state=obs_from_state, observation_space=observation_space)


def pusht_dataset_obs(episodes: Episodes) -> np.ndarray:
    """6-d observations (total_steps, 6) float32 from the recorded `state` key."""
    if "state" not in episodes.data:
        raise ScorePolicyError(f"{episodes.source or 'episodes'}: Push-T needs the 'state' key in the data")
    return pusht_obs_from_state(episodes.data["state"])


def pusht_dataset_actions(episodes: Episodes) -> np.ndarray:
    """Actions (total_steps, 2) float32 (target agent positions in pixels) from the `action` key."""
    if "action" not in episodes.data:
        raise ScorePolicyError(f"{episodes.source or 'episodes'}: Push-T needs the 'action' key in the data")
    return np.asarray(episodes.data["action"], dtype=np.float32)


def pusht_episode_metrics(infos: StepInfos) -> dict[str, float]:
    """Diffusion Policy's per-episode Push-T record from the infos of every step after reset, plus the
    behaviour label `approach_side` (the quarter of the T the agent reached first, −1 if none)."""
    coverages = [float(info["coverage"]) for info in infos if "coverage" in info]
    max_coverage = max(coverages, default=0.0)
    return {
        "max_coverage": max_coverage,
        "score": min(max_coverage / SUCCESS_COVERAGE, 1.0),
        "success": 1.0 if any(c > SUCCESS_COVERAGE for c in coverages) else 0.0,
        "approach_side": int(infos[-1].get("approach_side", -1)) if infos else -1,
    }


def _mean_of(records: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [float(r[key]) for r in records if key in r]
    return float(np.mean(values)) if values else None


def pusht_aggregate_metrics(records: list[dict[str, Any]]) -> dict[str, float]:
    """`mean_score` and `mean_max_coverage` over the episode records that carry them."""
    out: dict[str, float] = {}
    for key, name in (("score", "mean_score"), ("max_coverage", "mean_max_coverage")):
        mean = _mean_of(records, key)
        if mean is not None:
            out[name] = mean
    return out


PUSHT_TASK = Task(
    name="pusht",
    obs_dim=OBS_DIM,
    action_dim=2,
    max_steps=PUSHT_MAX_STEPS,
    default_seed=100000,
    make_env=make_pusht_env,
    dataset_obs=pusht_dataset_obs,
    dataset_actions=pusht_dataset_actions,
    episode_metrics=pusht_episode_metrics,
    aggregate_metrics=pusht_aggregate_metrics,
    stop_on_success=True,
    behaviour_key="approach_side",
    n_behaviours=len(APPROACH_SIDES),
    behaviour_names=APPROACH_SIDES,
)
