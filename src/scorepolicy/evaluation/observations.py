"""Env observations of either kind: a float32 state vector, or (image tasks) a dict {"state": float32
(obs_dim,), camera key: uint8 (H, W, 3)}; copied per step, batched across envs, zero-filled for envs that
never produced one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scorepolicy.core.task import Task

Observation = np.ndarray | dict[str, np.ndarray]


def as_observation(obs: Any) -> Observation:
    """An env's observation as it came, without a copy (a dict as is, anything else as a numpy array); the
    rollout's episode keeps the one private copy (`copy_observation`)."""
    return obs if isinstance(obs, dict) else np.asarray(obs)


def copy_observation(obs: Any) -> Observation:
    """A private copy of an env's observation: the state as float32, frames as uint8."""
    if isinstance(obs, dict):
        return {k: np.array(v, dtype=np.float32 if k == "state" else np.uint8) for k, v in obs.items()}
    return np.array(obs, dtype=np.float32)


def zero_observation(task: Task) -> Observation:
    """What the policy sees for an env with no observation (it failed before its first one)."""
    state = np.zeros(task.obs_dim, dtype=np.float32)
    if not task.image_shapes:
        return state
    return {"state": state, **{k: np.zeros(s, dtype=np.uint8) for k, s in task.image_shapes.items()}}


def stack_observations(observations: Sequence[Observation]) -> Observation:
    """One batch (B, ...) from per-env observations (arrays, or dicts stacked key by key)."""
    first = observations[0]
    if isinstance(first, dict):
        return {k: np.stack([o[k] for o in observations if isinstance(o, dict)]) for k in first}
    return np.stack([o for o in observations if isinstance(o, np.ndarray)]).astype(np.float32)


def state_of(obs: Observation) -> np.ndarray:
    """The state vector of an observation (what trajectories keep)."""
    return obs["state"] if isinstance(obs, dict) else obs
