"""A tiny image task: move a point to a coloured square that only the camera sees.

The agent is a point in [−1, 1]² whose position is the state; the target is a red square drawn at a
seeded place in a 32×32 camera frame (the agent is drawn there too, in green). A policy that ignores the
frame cannot know where to go, so a policy beating a random one has read the image. Demonstrations come
from a scripted expert (`generate_target_demos`); an episode succeeds when the point is within
SUCCESS_RADIUS of the target's centre. Small enough to train from pixels in seconds on a CPU.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from scorepolicy.core.episodes import Episodes
from scorepolicy.core.task import StepInfos, Task

SIZE = 32
"""Side of the camera frame in pixels."""
CAMERA = "image"
"""The camera key of the observations and the recorded data."""
SPEED = 0.2
"""Largest move per step (actions are clipped to [−1, 1] and scaled by this)."""
SUCCESS_RADIUS = 0.2
MAX_STEPS = 25
TARGET_HALF = 3
"""Half side of the target square in pixels."""


def to_pixel(xy: np.ndarray) -> tuple[int, int]:
    """(row, column) of a point of [−1, 1]² in the frame (x to the right, y downwards)."""
    col = round((float(xy[0]) + 1.0) / 2.0 * (SIZE - 1))
    row = round((float(xy[1]) + 1.0) / 2.0 * (SIZE - 1))
    return row, col


def draw_frame(agent: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The camera frame: a black field, the red target square and the agent as a green 3×3 patch."""
    frame = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    r, c = to_pixel(target)
    frame[max(r - TARGET_HALF, 0) : r + TARGET_HALF + 1, max(c - TARGET_HALF, 0) : c + TARGET_HALF + 1, 0] = (
        255
    )
    r, c = to_pixel(agent)
    frame[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2, 1] = 255
    return frame


class TargetImageEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """Observation {"state": agent position float32 (2,), "image": uint8 (32, 32, 3)}; action a velocity in
    [−1, 1]²; info {"success", "distance"}."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = spaces.Dict(  # type: ignore[assignment]
            {
                "state": spaces.Box(-1.0, 1.0, (2,), np.float32),
                CAMERA: spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.agent = np.zeros(2)
        self.target = np.zeros(2)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self.agent = self.np_random.uniform(-0.9, 0.9, 2)
        self.target = self.np_random.uniform(-0.75, 0.75, 2)
        return self._obs(), self._info()

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        move = SPEED * np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        self.agent = np.clip(self.agent + move, -1.0, 1.0)
        info = self._info()
        return self._obs(), -info["distance"], False, False, info

    def render(self) -> np.ndarray:
        return draw_frame(self.agent, self.target)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"state": self.agent.astype(np.float32), CAMERA: draw_frame(self.agent, self.target)}

    def _info(self) -> dict[str, Any]:
        distance = float(np.linalg.norm(self.agent - self.target))
        return {"success": distance < SUCCESS_RADIUS, "distance": distance}


def expert_action(agent: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The scripted expert: head straight for the target at full speed, slowing down at the end."""
    return np.clip((target - agent) / SPEED, -1.0, 1.0).astype(np.float32)


def generate_target_demos(n_episodes: int, seed: int = 0) -> Episodes:
    """Expert episodes (reset seeds seed, seed + 1, …) as Episodes with 'state', 'image' and 'action'."""
    states, frames, actions, ends = [], [], [], []
    env = TargetImageEnv()
    for i in range(n_episodes):
        obs, info = env.reset(seed=seed + i)
        for _ in range(MAX_STEPS):
            action = expert_action(env.agent, env.target)
            states.append(obs["state"])
            frames.append(obs[CAMERA])
            actions.append(action)
            obs, _, _, _, info = env.step(action)
            if info["success"]:
                break
        ends.append(len(actions))
    data = {"state": np.stack(states), CAMERA: np.stack(frames), "action": np.stack(actions)}
    return Episodes(data, np.asarray(ends), source=f"target-image expert (seed {seed})")


def _episode_metrics(infos: StepInfos) -> dict[str, float]:
    if not infos:
        return {"success": 0.0, "final_distance": float("nan")}
    return {
        "success": float(any(bool(i.get("success")) for i in infos)),
        "final_distance": float(infos[-1]["distance"]),
    }


def _aggregate(records: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in records if "final_distance" in r]
    return {
        "mean_final_distance": float(np.mean([r["final_distance"] for r in done])) if done else float("nan")
    }


def _make_env(render_mode: str | None = None) -> gym.Env[Any, Any]:
    return TargetImageEnv(render_mode)


def _dataset_obs(episodes: Episodes) -> np.ndarray:
    return np.asarray(episodes.data["state"], dtype=np.float32)


def _dataset_actions(episodes: Episodes) -> np.ndarray:
    return np.asarray(episodes.data["action"], dtype=np.float32)


def _dataset_images(episodes: Episodes) -> dict[str, np.ndarray]:
    return {CAMERA: np.asarray(episodes.data[CAMERA], dtype=np.uint8)}


TARGET_IMAGE_TASK = Task(
    name="target-image",
    obs_dim=2,
    action_dim=2,
    max_steps=MAX_STEPS,
    default_seed=100000,
    make_env=_make_env,
    dataset_obs=_dataset_obs,
    dataset_actions=_dataset_actions,
    episode_metrics=_episode_metrics,
    aggregate_metrics=_aggregate,
    image_shapes={CAMERA: (SIZE, SIZE, 3)},
    dataset_images=_dataset_images,
)
