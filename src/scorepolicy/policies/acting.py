"""Acting step by step: the observation history and action queue of `select_action`, for state vectors and
for dict observations with camera frames (shared by every policy runtime, torch and ONNX)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scorepolicy.errors import ScorePolicyError
from scorepolicy.policies.images import Frames, stack_history

Goal = dict[str, Any]
"""A goal: {'task': ids (B,) and/or 'goal': raw goal vectors (B, goal_dim)}, numpy or torch."""


def next_queued_action(policy: Any, obs: Tensor | Frames, goal: Goal | None) -> Tensor:
    """The observation-history / action-queue step of `select_action` shared by every policy runtime
    (torch and ONNX): append the checked batch `obs` (B, d_o) (or, for image policies, a dict {"state":
    (B, d_o), camera: (B, H, W, 3)}) to `policy._obs_history` (filled with it at an episode's start),
    re-plan `policy.cfg.n_action_steps` actions with `policy.predict_action_chunk` when
    `policy._action_queue` is empty, and pop the next action (B, d_a)."""
    history_, queue = policy._obs_history, policy._action_queue
    if history_ and _rows(history_[-1]) != _rows(obs):
        raise ScorePolicyError("select_action: batch size changed without reset(); call policy.reset()")
    if not history_:
        history_.extend([obs] * policy.cfg.n_obs_steps)
    else:
        history_.append(obs)
    if not queue:
        history = stack_history(list(history_))
        chunk = policy.predict_action_chunk(history, goal=goal if goal is not None else policy._goal)
        queue.extend(chunk[:, : policy.cfg.n_action_steps].unbind(dim=1))
    action: Tensor = queue.popleft()
    return action


def _rows(obs: Tensor | Frames) -> int:
    return int((obs["state"] if isinstance(obs, dict) else obs).shape[0])


def select_from_dict(policy: Any, obs: Any, goal: Goal | None) -> Any:
    """`select_action` of a ChunkPolicy for a dict observation {"state", camera keys} (one step, batched or
    not): the action comes back as the state came in (numpy, or a tensor on its device)."""
    if not isinstance(obs, Mapping):
        policy.split_input(obs, ())  # refuses an array with the keys this policy takes
    given = obs.get("state")
    is_numpy = not isinstance(given, Tensor)
    where = given.device if isinstance(given, Tensor) else torch.device("cpu")
    single = given is not None and np.ndim(given) == 1
    if single:
        obs = {k: (v[None] if isinstance(v, Tensor) else np.asarray(v)[None]) for k, v in obs.items()}
    state, frames = policy.split_input(obs, ())
    step: Tensor | Frames = {"state": state.float(), **(frames or {})} if frames is not None else state
    action = next_queued_action(policy, step, goal)
    action = action[0] if single else action
    return action.cpu().numpy() if is_numpy else action.to(where)
