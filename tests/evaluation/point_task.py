"""The point task of the evaluation tests: a 1-D point moving to a seeded target (light imports only).

Env worker processes are spawned and unpickle the task, importing this module by name; the repository
root is put on `sys.path` (which spawn passes on to them) by the evaluation tests' conftest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from scorepolicy.core.episodes import Episodes
from scorepolicy.core.task import Task

SUCCESS_RADIUS = 0.05
SPEED = 0.1


class PointEnv(gym.Env[np.ndarray, np.ndarray]):
    """A point on a line moving towards a seeded target; success within SUCCESS_RADIUS of it.

    Observation `[pos, target]`; each step moves by `SPEED * clip(action)` plus seeded noise, so the
    outcome depends on the reset seed. Options: crash (raise) at a step for one seed, hang (sleep for
    an hour) or die (exit the process) at a step for one seed, terminate on success, an env-side time
    limit (truncation).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012

    def __init__(
        self,
        render_mode: str | None = None,
        crash_seed: int | None = None,
        crash_step: int = 3,
        terminate_on_success: bool = False,
        time_limit: int | None = None,
        hang_seed: int | None = None,
        die_seed: int | None = None,
    ) -> None:
        self.render_mode = render_mode
        self.hang_seed = hang_seed
        self.die_seed = die_seed
        self.crash_seed = crash_seed
        self.crash_step = crash_step
        self.terminate_on_success = terminate_on_success
        self.time_limit = time_limit
        self.observation_space = spaces.Box(-3.0, 3.0, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.pos = 0.0
        self.target = 0.0
        self._seed: int | None = None
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._seed = seed
        self._t = 0
        self.pos = float(self.np_random.uniform(-1.0, 1.0))
        self.target = float(self.np_random.uniform(-1.0, 1.0))
        return self._obs(), {"start": self.pos}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._t += 1
        if self._seed is not None and self._seed == self.crash_seed and self._t == self.crash_step:
            raise RuntimeError("simulated crash")
        if self._seed is not None and self._seed == self.hang_seed and self._t == self.crash_step:
            time.sleep(3600)
        if self._seed is not None and self._seed == self.die_seed and self._t == self.crash_step:
            os._exit(3)
        move = SPEED * float(np.clip(np.asarray(action).reshape(-1)[0], -1.0, 1.0))
        self.pos += move + 0.005 * float(self.np_random.normal())
        distance = abs(self.pos - self.target)
        success = distance < SUCCESS_RADIUS
        terminated = success and self.terminate_on_success
        truncated = self.time_limit is not None and self._t >= self.time_limit
        # `mixed` is an int for even seeds and a float for odd ones: batching must not coerce its type.
        mixed: int | float = 1 if (self._seed or 0) % 2 == 0 else 0.25
        info = {"success": success, "distance": distance, "nested": {"t": self._t}, "mixed": mixed}
        return self._obs(), -distance, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        frame = np.zeros((16, 32, 3), dtype=np.uint8)
        column = int(np.clip((self.pos + 1.6) / 3.2 * 31, 0, 31))
        frame[:, column] = 255
        return frame

    def _obs(self) -> np.ndarray:
        return np.array([self.pos, self.target], dtype=np.float32)


def _episode_metrics(infos: Sequence[dict[str, Any]]) -> dict[str, float]:
    return {
        "success": float(any(bool(i["success"]) for i in infos)),
        "final_distance": float(infos[-1]["distance"]),
        "mixed": infos[-1]["mixed"],
    }


def _aggregate(records: list[dict[str, Any]]) -> dict[str, float]:
    return {"mean_final_distance": float(np.mean([r["final_distance"] for r in records]))}


def _no_data(episodes: Episodes) -> np.ndarray:
    raise NotImplementedError


def make_point_task(
    *,
    max_steps: int = 15,
    stop_on_success: bool = True,
    crash_seed: int | None = None,
    crash_step: int = 3,
    terminate_on_success: bool = False,
    time_limit: int | None = None,
    broken: bool = False,
    hang_seed: int | None = None,
    die_seed: int | None = None,
) -> Task:
    """The point task with the given options (broken: make_env always raises)."""

    def make_env(render_mode: str | None) -> gym.Env[np.ndarray, np.ndarray]:
        if broken:
            raise OSError("simulator not installed")
        return PointEnv(
            render_mode, crash_seed, crash_step, terminate_on_success, time_limit, hang_seed, die_seed
        )

    return Task(
        name="point",
        obs_dim=2,
        action_dim=1,
        max_steps=max_steps,
        default_seed=1000,
        make_env=make_env,
        dataset_obs=_no_data,
        dataset_actions=_no_data,
        episode_metrics=_episode_metrics,
        aggregate_metrics=_aggregate,
        stop_on_success=stop_on_success,
    )
