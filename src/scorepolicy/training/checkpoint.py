"""The resumable training state as one atomically written safetensors file (tensors + JSON metadata)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

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


def load_train_state(path: Path, state: TrainState) -> None:
    """Restore `state` in place from `path` (written by save_train_state)."""
    if not path.is_file():
        raise ScorePolicyError(f"{path}: no training state to resume from; train without --resume first")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["train_state"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (KeyError, json.JSONDecodeError, OSError, RuntimeError) as e:
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


def _load_module(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, path: Path) -> None:
    sub = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    expected = module.state_dict()
    if set(sub) != set(expected) or any(sub[k].shape != expected[k].shape for k in sub):
        raise ScorePolicyError(
            f"{path}: saved weights do not match this model's config; resume with the same config"
        )
    module.load_state_dict(sub)
