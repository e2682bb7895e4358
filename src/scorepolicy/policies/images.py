"""Observations with camera frames: checking a dict {"state", camera keys} against a policy's image shapes,
and stacking observation histories of either kind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scorepolicy.errors import ScorePolicyError
from scorepolicy.models.vision import Crop

Frames = dict[str, Tensor]
"""Camera key -> uint8 frames (B, [T_o,] H, W, 3), or, in an observation history step, the state too."""

__all__ = ["Crop", "Frames", "example_input", "split_input", "stack_history", "state_only"]


def _tensor(value: Any, dtype: np.dtype[Any] | None = None) -> Tensor:
    if isinstance(value, Tensor):
        return value
    return torch.as_tensor(np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype))


def expected_keys(image_shapes: Mapping[str, tuple[int, ...]]) -> str:
    """The keys an observation must have, for messages."""
    return ", ".join(["state", *sorted(image_shapes)])


def split_input(
    obs: Tensor | np.ndarray | Mapping[str, Any],
    image_shapes: Mapping[str, tuple[int, ...]],
    steps: tuple[int, ...],
    device: torch.device,
) -> tuple[Tensor, Frames | None]:
    """(state, frames) of an observation: an array (state-only policies) or a dict {"state", camera keys}.

    Frames must be uint8 of shape (batch, *steps, H, W, 3) with the batch of the state and (H, W, 3) from
    `image_shapes`; they are moved to `device`. The state is returned as given (float32 if it was numpy);
    the caller checks its shape.
    """
    if not isinstance(obs, Mapping):
        if image_shapes:
            raise ScorePolicyError(
                f"observation: this policy conditions on camera frames; pass a dict with keys "
                f"{expected_keys(image_shapes)}"
            )
        return _tensor(obs, np.dtype(np.float32)), None
    if "state" not in obs:
        raise ScorePolicyError(
            f"observation: key 'state' missing; expected keys {expected_keys(image_shapes)}"
        )
    unexpected = sorted(set(obs) - {"state", *image_shapes})
    if unexpected:
        raise ScorePolicyError(
            f"observation: unexpected key '{unexpected[0]}'; this policy takes {expected_keys(image_shapes)}"
        )
    state = _tensor(obs["state"], np.dtype(np.float32))
    lead = (int(state.shape[0]) if state.ndim else 0, *steps)
    frames: Frames = {}
    for key in sorted(image_shapes):
        expected = (*lead, *image_shapes[key])
        if key not in obs:
            raise ScorePolicyError(
                f"observation: camera '{key}' missing; expected uint8 frames of shape {expected}"
            )
        f = _tensor(obs[key])
        if tuple(f.shape) != expected:
            raise ScorePolicyError(
                f"observation: camera '{key}' has shape {tuple(f.shape)}, expected {expected}"
            )
        if f.dtype != torch.uint8:
            raise ScorePolicyError(
                f"observation: camera '{key}' has dtype {f.dtype}, expected uint8 RGB frames (0..255)"
            )
        frames[key] = f.to(device)
    return state, (frames or None)


def stack_history(history: Sequence[Tensor | Frames]) -> Tensor | Frames:
    """Observation steps (B, ...) → a history (B, T, ...): tensors, or dicts stacked key by key."""
    first = history[0]
    if isinstance(first, dict):
        return {k: torch.stack([h[k] for h in history if isinstance(h, dict)], dim=1) for k in first}
    return torch.stack([h for h in history if isinstance(h, Tensor)], dim=1)


def state_only(obs: Tensor | Frames, what: str) -> Tensor:
    """`obs` if it is a state tensor; a one-line error naming `what` for a dict with camera frames."""
    if isinstance(obs, dict):
        raise ScorePolicyError(f"{what}: takes state observations only, not camera frames ({', '.join(obs)})")
    return obs


def example_input(state: Tensor, image_shapes: Mapping[str, tuple[int, ...]]) -> Tensor | dict[str, Tensor]:
    """`state` (B, ..., d_o) as a policy's input: itself for state-only policies, else a dict with mid-grey
    uint8 frames of every camera (B, ..., H, W, 3) on its device (for timing and tracing)."""
    if not image_shapes:
        return state
    lead = tuple(state.shape[:-1])
    frames = {
        k: torch.full((*lead, *s), 128, dtype=torch.uint8, device=state.device)
        for k, s in image_shapes.items()
    }
    return {"state": state, **frames}
