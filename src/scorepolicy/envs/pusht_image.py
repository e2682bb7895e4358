"""Push-T from pixels (`pusht-image`): Diffusion Policy's image protocol, a 96 × 96 RGB frame and the agent position.

Observation (a gymnasium Dict): `{"state": float32 (2,) agent x, y in pixels, "image": uint8 (96, 96, 3) RGB}`.
The frame is drawn by `PushTRenderer` exactly as gym-pusht draws it (DP's renderer: pixel-identical), so it
matches the recorded `data/img` frames of the Push-T replay zarr (tested on real frames). The training data
reads `data/state[:, :2]` and `data/img` (stored as float32 0..255, kept as uint8 in memory). Physics,
metrics, success, step limit and seeds are those of `pusht`; `render()` (videos) is gym-pusht's 680-px view.
"""

from __future__ import annotations

import dataclasses
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from scorepolicy.core.episodes import Episodes
from scorepolicy.data.zarr_replay import frames_as_uint8
from scorepolicy.envs.pusht import PUSHT_TASK, PushTStateEnv, make_pusht_env
from scorepolicy.envs.pusht_render import CANVAS_PX, PushTRenderer
from scorepolicy.errors import ScorePolicyError

IMAGE_KEY = "image"
"""The camera key of pusht-image's observations (and of `dataset_images`)."""
IMAGE_SIZE = 96
"""Side of DP's Push-T frames in pixels."""
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)
AGENT_POS_DIM = 2
ZARR_IMAGE_KEY = "img"
"""The replay zarr's frame array (float32 0..255 in DP's store)."""


def agent_pos_from_state(state: np.ndarray) -> np.ndarray:
    """Raw states (..., 5) [ax, ay, bx, by, angle] → the agent position (..., 2) float32."""
    s = np.asarray(state)
    if s.shape[-1:] != (5,):
        raise ScorePolicyError(f"Push-T state must have 5 values in its last axis, got shape {s.shape}")
    return np.asarray(s[..., :AGENT_POS_DIM], dtype=np.float32)


def image_observation_space() -> spaces.Dict:
    """The Dict space of pusht-image observations: the agent position and the 96-px RGB frame."""
    return spaces.Dict(
        {
            "state": spaces.Box(low=0.0, high=float(CANVAS_PX), shape=(AGENT_POS_DIM,), dtype=np.float32),
            IMAGE_KEY: spaces.Box(low=0, high=255, shape=IMAGE_SHAPE, dtype=np.uint8),
        }
    )


class PushTImageEnv(gym.Wrapper[Any, Any, Any, Any]):
    """A `PushTStateEnv` (agent-position state) whose observations gain the 96-px camera frame.

    `reset(options={"reset_to_state": s})` lands exactly on a recorded state as `PushTStateEnv` does.
    """

    def __init__(self, env: PushTStateEnv, size: int = IMAGE_SIZE) -> None:
        super().__init__(env)
        self.observation_space = image_observation_space()
        self.renderer = PushTRenderer(env.unwrapped, size)

    def _observe(self, state: np.ndarray) -> dict[str, np.ndarray]:
        return {"state": state, IMAGE_KEY: self.renderer.frame()}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset (from `seed`, or to `options["reset_to_state"]`) and observe the state and the frame."""
        state, info = self.env.reset(seed=seed, options=options)
        return self._observe(state), info

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        """One 10 Hz control step of Push-T, then the new state and frame."""
        state, reward, terminated, truncated, info = self.env.step(action)
        return self._observe(state), reward, terminated, truncated, info

    def raw_state(self) -> np.ndarray:
        """The simulator's current 5-d state [ax, ay, bx, by, angle mod 2*pi] (float64)."""
        inner: PushTStateEnv = self.env  # type: ignore[assignment]
        return inner.raw_state()


def make_pusht_image_env(render_mode: str | None = None, fast: bool = True) -> PushTImageEnv:
    """A pusht-image env (gym-pusht physics, `FastPushTEnv` when `fast`): dict observations with the frame."""
    space = spaces.Box(low=0.0, high=float(CANVAS_PX), shape=(AGENT_POS_DIM,), dtype=np.float32)
    inner = make_pusht_env(render_mode, fast, obs_from_state=agent_pos_from_state, observation_space=space)
    return PushTImageEnv(inner)


def pusht_image_dataset_obs(episodes: Episodes) -> np.ndarray:
    """The state part (total_steps, 2) float32: the agent position from the recorded `state` key."""
    if "state" not in episodes.data:
        raise ScorePolicyError(
            f"{episodes.source or 'episodes'}: pusht-image needs the 'state' key in the data"
        )
    return agent_pos_from_state(episodes.data["state"])


def pusht_image_dataset_images(episodes: Episodes) -> dict[str, np.ndarray]:
    """{"image": uint8 (total_steps, 96, 96, 3)} from the recorded `img` key (load the zarr with its images:
    `load_dataset(path, keys=[..., "img"])` or `read_replay_zarr(path, images=True)`)."""
    where = episodes.source or "episodes"
    if ZARR_IMAGE_KEY not in episodes.data:
        raise ScorePolicyError(
            f"{where}: pusht-image needs the recorded frames 'img' (DP's Push-T replay zarr has data/img); "
            "read the store with images=True"
        )
    frames = episodes.data[ZARR_IMAGE_KEY]
    if frames.shape[1:] != IMAGE_SHAPE:
        raise ScorePolicyError(
            f"{where}: data/img frames must have shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3), got {frames.shape}"
        )
    return {IMAGE_KEY: frames_as_uint8(frames, f"{where}: data/img")}


PUSHT_IMAGE_TASK = dataclasses.replace(
    PUSHT_TASK,
    name="pusht-image",
    obs_dim=AGENT_POS_DIM,
    make_env=make_pusht_image_env,
    dataset_obs=pusht_image_dataset_obs,
    image_shapes={IMAGE_KEY: IMAGE_SHAPE},
    dataset_images=pusht_image_dataset_images,
)
"""Push-T from pixels: agent position + 96-px frame; actions, metrics, behaviours and seeds as `pusht`."""
