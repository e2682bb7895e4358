"""Push-T with Diffusion Policy's keypoint observation (`pusht-keypoints`): 9 block keypoints + agent position.

Observation (20 float32 numbers, pixels): `[agent_x, agent_y, kp0_x, kp0_y, ..., kp8_x, kp8_y]`. The agent
comes first, as in the `pusht` task (DP puts it last; the order makes no difference to a policy, which
normalises every entry on its own and reads the vector as a whole). The env computes the keypoints from
the block's pose with DP's local keypoints (`DP_BLOCK_KEYPOINTS`); the training data reads the recorded
`data/keypoint` array and the agent position from `data/state` as they are, not recomputed. Physics,
metrics, success, step limit and seeds are those of `pusht`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from gymnasium import spaces

from scorepolicy.core.episodes import Episodes
from scorepolicy.envs.pusht import PUSHT_TASK, PushTStateEnv, make_pusht_env
from scorepolicy.errors import ScorePolicyError

N_KEYPOINTS = 9
KEYPOINT_OBS_DIM = 2 + 2 * N_KEYPOINTS
_MAX_PIXELS = 512.0

# Diffusion Policy's 9 block keypoints in the block's own frame (pixels; the frame gym-pusht's
# `block.local_to_world` uses: origin at the block position of the state, the T's bar along y 0..30 and
# its stem along y 30..120). DP drew them once at random: farthest-point sampling over the pixels of the
# rendered T (seed 0) plus a uniform [0, 1) jitter per coordinate, so they are not round numbers and no
# formula of the T's geometry gives them; they lie on the T as drawn (its outline reaches up to 3 px past
# the shape). gym-pusht's own `get_keypoints` returns the 8 corners of the T's two rectangles instead.
# Derived here from the shared replay zarr by least squares: for each frame, the recorded `keypoint`
# rotated back by the recorded block angle and shifted by the block position of `state`, averaged over
# the 13,755 frames with no contact in their step (per-point spread there 1.5e-4 px; the median over all
# 25,650 frames gives the same points within 2e-6 px). Every recorded frame's keypoints are this set moved
# rigidly to within 2.4e-5 px (float32 precision at 512 px). On about a quarter of the frames, mostly
# just after a contact, that rigid motion is not exactly the recorded `state`'s pose (up to 0.015 rad and
# 1 px apart; keypoints from `state` then differ from the recorded ones by up to 2.05 px, 99% of frames
# within 0.035 px): a property of the recording, which the tests measure.
DP_BLOCK_KEYPOINTS = np.array(
    [
        [9.2697868, 90.0409735],
        [-60.9834727, -1.1867291],
        [60.9127548, -1.3933651],
        [-0.2705040, 25.5436251],
        [-14.0649268, 122.8158537],
        [39.0027376, 32.8574035],
        [-39.9664150, 32.7296559],
        [-16.8243444, 62.8631792],
        [23.5414602, -1.7002884],
    ],
    dtype=np.float64,
)


def block_keypoints(state: np.ndarray) -> np.ndarray:
    """The block's 9 keypoints (..., 9, 2) in pixels (float64) from raw states (..., 5) [ax, ay, bx, by, angle]."""
    s = np.asarray(state, dtype=np.float64)
    if s.shape[-1:] != (5,):
        raise ScorePolicyError(f"Push-T state must have 5 values in its last axis, got shape {s.shape}")
    cos, sin = np.cos(s[..., 4:5]), np.sin(s[..., 4:5])
    lx, ly = DP_BLOCK_KEYPOINTS[:, 0], DP_BLOCK_KEYPOINTS[:, 1]
    x = s[..., 2:3] + cos * lx - sin * ly
    y = s[..., 3:4] + sin * lx + cos * ly
    return np.stack([x, y], axis=-1)


def keypoint_obs_from_state(state: np.ndarray) -> np.ndarray:
    """Raw states (..., 5) → keypoint observations (..., 20) float32: agent x, y then the 9 keypoints' x, y."""
    s = np.asarray(state, dtype=np.float64)
    points = block_keypoints(s)
    flat = points.reshape(*points.shape[:-2], 2 * N_KEYPOINTS)
    return np.concatenate([s[..., :2], flat], axis=-1).astype(np.float32)


def keypoint_observation_space() -> spaces.Box:
    """The Box of the 20-d observation. Keypoints of a block near the walls may leave [0, 512] slightly."""
    return spaces.Box(low=-_MAX_PIXELS, high=2 * _MAX_PIXELS, shape=(KEYPOINT_OBS_DIM,), dtype=np.float32)


def make_pusht_keypoints_env(render_mode: str | None = None, fast: bool = True) -> PushTStateEnv:
    """A Push-T env (gym-pusht physics, `FastPushTEnv` when `fast`) returning the 20-d keypoint observation."""
    return make_pusht_env(
        render_mode,
        fast,
        obs_from_state=keypoint_obs_from_state,
        observation_space=keypoint_observation_space(),
    )


def keypoint_dataset_obs(episodes: Episodes) -> np.ndarray:
    """Observations (total_steps, 20) float32 from the recorded `state` (agent x, y) and `keypoint` (9, 2)."""
    where = episodes.source or "episodes"
    for key in ("state", "keypoint"):
        if key not in episodes.data:
            raise ScorePolicyError(
                f"{where}: task 'pusht-keypoints' needs the '{key}' key in the data (a Diffusion Policy "
                "Push-T replay zarr has data/state and data/keypoint); use --task pusht for state-only data"
            )
    state, points = episodes.data["state"], episodes.data["keypoint"]
    n = episodes.n_steps
    if state.shape != (n, 5) or points.shape != (n, N_KEYPOINTS, 2):
        raise ScorePolicyError(
            f"{where}: task 'pusht-keypoints' needs state of shape ({n}, 5) and keypoint of shape "
            f"({n}, {N_KEYPOINTS}, 2), got {state.shape} and {points.shape}"
        )
    flat = np.asarray(points, dtype=np.float32).reshape(n, 2 * N_KEYPOINTS)
    return np.concatenate([np.asarray(state[:, :2], dtype=np.float32), flat], axis=1)


PUSHT_KEYPOINTS_TASK = dataclasses.replace(
    PUSHT_TASK,
    name="pusht-keypoints",
    obs_dim=KEYPOINT_OBS_DIM,
    make_env=make_pusht_keypoints_env,
    dataset_obs=keypoint_dataset_obs,
)
"""Push-T with DP's low-dim observation; actions, metrics, behaviours and seeds as `pusht`."""
