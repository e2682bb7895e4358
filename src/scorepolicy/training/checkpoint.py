"""The resumable training state as one atomically written safetensors file (tensors + JSON metadata)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import atomic_save_tensors

STATE_FILE = "train_state.safetensors"


@dataclass
class TrainState:
    """Everything the loop needs to continue exactly where it stopped."""

    step: int
    model: torch.nn.Module
    ema: torch.nn.Module
    optimizer: torch.optim.Optimizer
    data_rng: np.random.Generator
    noise_gen: torch.Generator


def save_train_state(path: Path, state: TrainState) -> None:
    """Weights, EMA weights, AdamW moments and both RNG states, written atomically."""
    tensors = {f"model.{k}": v for k, v in state.model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in state.ema.state_dict().items()})
    opt = state.optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in opt["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    tensors["noise_gen"] = state.noise_gen.get_state()
    meta = {
        "step": state.step,
        "param_groups": opt["param_groups"],
        "optim_scalars": scalars,
        "data_rng": state.data_rng.bit_generator.state,
    }
    atomic_save_tensors(path, tensors, metadata={"train_state": json.dumps(meta)})


def missing_state_error(path: Path) -> ScorePolicyError:
    """The error for a run without a training state."""
    return ScorePolicyError(f"{path}: no training state to resume from; train without --resume first")


def load_train_state(path: Path, state: TrainState) -> None:
    """Restore `state` in place from `path` (written by save_train_state)."""
    if not path.is_file():
        raise missing_state_error(path)
    load_train_state_bytes(path.read_bytes(), state, path)


def load_train_state_bytes(data: bytes, state: TrainState, path: Path) -> None:
    """Restore `state` in place from the bytes of a train_state.safetensors file (`path` names it in
    errors). Tensors are read on the CPU, then copied onto the devices of `state`'s modules."""
    try:
        meta = json.loads(_safetensors_metadata(data)["train_state"])
        tensors = load_safetensors(data)
    except (KeyError, ValueError, OSError, RuntimeError, SafetensorError) as e:
        raise ScorePolicyError(
            f"{path}: unreadable training state ({e}); resume from an earlier run copy"
        ) from e
    _load_module(state.model, tensors, "model.", path)
    _load_module(state.ema, tensors, "ema.", path)
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = value
    for pid, extra in meta["optim_scalars"].items():
        opt_state.setdefault(int(pid), {}).update(extra)
    state.optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    state.noise_gen.set_state(tensors["noise_gen"])
    state.data_rng.bit_generator.state = meta["data_rng"]
    state.step = int(meta["step"])


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors file's JSON header (an 8-byte little-endian length, then JSON)."""
    if len(data) < 8:
        raise ValueError("file shorter than a safetensors header")
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        raise KeyError("__metadata__")
    return meta


def _load_module(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, path: Path) -> None:
    sub = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    expected = module.state_dict()
    if set(sub) != set(expected) or any(sub[k].shape != expected[k].shape for k in sub):
        raise ScorePolicyError(
            f"{path}: saved weights do not match this model's config; resume with the same config"
        )
    module.load_state_dict(sub)
