"""What every RL method shares: the context a method trains in, the method registry, and the improved-run
directory (a verified copy of the base run + the small learned part; safetensors + JSON, nothing pickled).

Improved-run layout::

    config.json          {"format": IMPROVED_FORMAT, "kind": "dsrl"|"residual"|"best-of-k", "method": {...},
                          "reward": ..., "policy": <the base's policy config>, "base_sha256": ...,
                          "subtask": <multi-task suites: the one task trained on, when given>}
    base/                model.safetensors + config.json (+ train_config.json) copied from the base run
    model.safetensors    the learned part (actor / residual network)
    train_config.json    the base run's (so `eval` finds the task)
    improve_config.json  every setting of the improvement run
    curve.csv, tb/       evaluation curve;   rl_state/  resumable checkpoint
"""

from __future__ import annotations

import importlib
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import atomic_write_json, read_json, sha256_file
from scorepolicy.policies import ChunkPolicy
from scorepolicy.policies.registry import IMPROVED_FORMAT

BASE_DIR = "base"
STATE_DIR = "rl_state"
METHOD_MODULES: dict[str, str] = {
    "dsrl": "scorepolicy.rl.dsrl",
    "residual": "scorepolicy.rl.residual",
    "best-of-k": "scorepolicy.rl.best_of_k",
}
"""Method name → module defining `METHOD = (ConfigClass, train_fn)` and `POLICY_CLASS` (imported lazily)."""


@dataclass
class RLContext:
    """Everything a method's `train(ctx, cfg, resume)` needs besides its own config."""

    base: ChunkPolicy
    """The trained policy, frozen: eval mode, never in an optimiser, optimize_for_inference() done."""
    task: Task
    """The task (env factory, metrics, max_steps)."""
    run_dir: Path
    """Output run directory of the improved policy (base copy already written by the driver)."""
    env_steps: int
    """Budget of real env steps (each executed action = 1 env step)."""
    n_envs: int
    """Training envs stepped together (the base runs batched: one call per wave)."""
    train_seed: int
    """Training episodes use env seeds train_seed, train_seed+1, ...; never overlaps eval seeds."""
    reward: str
    """Reward kind: 'coverage' (Push-T env reward) | 'success' | 'shaped' (Meta-World env reward)."""
    evaluate: Callable[[Any, int], dict[str, Any]]
    """evaluate(policy, env_step): the project's evaluation on the fixed eval seeds + one curve point."""
    eval_every: int
    """Env steps between curve points (the driver evaluates the base at step 0 first)."""
    checkpoint_every: int
    """Env steps between resumable checkpoints."""
    progress: bool
    """Show a tqdm bar of env steps."""
    seed: int
    """RL seed (networks, exploration)."""
    max_minutes: float | None = None
    """Wall-clock budget of the training loop in minutes (stops like the env-step budget); None: none."""

    def out_of_budget(self, env_steps: int, started: float) -> bool:
        """Whether the env-step budget or the wall-clock budget (from `started`, time.monotonic()) is used up."""
        import time

        late = self.max_minutes is not None and time.monotonic() - started >= 60.0 * self.max_minutes
        return env_steps >= self.env_steps or late


TrainFn = Callable[[RLContext, Any, bool], Any]


REWARDS = ("coverage", "success", "shaped")
"""Reward kinds an improvement can train on (per task: `api.improvement.REWARDS`)."""


def step_reward(kind: str, env_reward: float, success: bool, steps_left: int = 0) -> float:
    """The RL reward of one env step. 'coverage': the env reward − 1 (Push-T; ≤ 0, so finishing sooner is
    better); 'success': 0 at the successful step, −1 at every other; 'shaped': the env's own reward.

    For 'coverage' and 'success' an episode that a failure ends early (the obstacle task's collisions)
    also pays −1 for each of the `steps_left` steps it had left, as if it failed until the step limit:
    otherwise crashing at once would beat a long flight to the goal. An episode that never succeeds thus
    returns −max_steps however it ends, one that succeeds at step L returns −(L − 1)."""
    if kind == "coverage":
        return float(env_reward) - 1.0 - steps_left
    if kind == "success":
        return (0.0 if success else -1.0) - steps_left
    if kind == "shaped":
        return float(env_reward)
    raise ScorePolicyError(f"--reward {kind}: unknown reward; valid: {', '.join(REWARDS)}")


def get_method(name: str) -> tuple[type, TrainFn]:
    """(config class, train function) of an RL method, imported on first use."""
    if name not in METHOD_MODULES:
        raise ScorePolicyError(f"unknown method '{name}'; valid methods: {', '.join(METHOD_MODULES)}")
    try:
        module = importlib.import_module(METHOD_MODULES[name])
    except ModuleNotFoundError as e:
        raise ScorePolicyError(
            f"method '{name}' needs {e.name}: pip install 'scorepolicy[rl]'"
            if e.name and not e.name.startswith("scorepolicy")
            else f"method '{name}' is not available in this version ({e.name} missing)"
        ) from e
    cfg_cls, train_fn = module.METHOD
    return cfg_cls, train_fn


class _Methods(dict[str, tuple[type, TrainFn]]):
    """METHODS[name] imports the method's module lazily (stable-baselines3 only when a method is used)."""

    def __missing__(self, name: str) -> tuple[type, TrainFn]:
        value = get_method(name)
        self[name] = value
        return value

    def __contains__(self, name: object) -> bool:
        return name in METHOD_MODULES

    def keys(self) -> Any:
        return METHOD_MODULES.keys()


METHODS: dict[str, tuple[type, TrainFn]] = _Methods()
"""Method name → (config class, train_fn(ctx, cfg, resume) -> improved policy)."""


def improved_policy_class(kind: str) -> type:
    """The improved-policy class of a method kind ('dsrl', 'residual')."""
    if kind not in METHOD_MODULES:
        raise ScorePolicyError(f"unknown improved-policy kind '{kind}'; valid: {', '.join(METHOD_MODULES)}")
    cls: type = importlib.import_module(METHOD_MODULES[kind]).POLICY_CLASS
    return cls


# ---------------------------------------------------------------- the improved-run directory
def base_weights(base_run: Path) -> Path:
    """The weights file of a base run, with a one-line error if it is missing."""
    path = Path(base_run) / "model.safetensors"
    if not path.is_file():
        raise ScorePolicyError(
            f"{path}: base weights missing; pass a trained run directory (scorepolicy train --out)"
        )
    return path


def copy_base(base_run: Path, run_dir: Path) -> str:
    """Copy the base run's weights and configs to run_dir/base (and its train_config.json beside it);
    returns the sha256 of the weights."""
    base_run, target = Path(base_run), Path(run_dir) / BASE_DIR
    weights = base_weights(base_run)
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "train_config.json"):
        if (base_run / name).is_file():
            shutil.copy2(base_run / name, target / name)
    if (base_run / "train_config.json").is_file():
        shutil.copy2(base_run / "train_config.json", Path(run_dir) / "train_config.json")
    tmp = target / ".model.safetensors.tmp"
    shutil.copy2(weights, tmp)
    tmp.replace(target / "model.safetensors")
    return sha256_file(target / "model.safetensors")


def write_improved_config(
    run_dir: Path,
    kind: str,
    method_cfg: dict[str, Any],
    reward: str,
    base: ChunkPolicy,
    base_sha256: str,
    subtask: str | None = None,
) -> None:
    """Write run_dir/config.json of an improved policy (what `from_pretrained` reads); `subtask`: the one
    task of a multi-task suite it was trained on (evaluation defaults to it)."""
    from scorepolicy.files import to_dict

    meta = {
        "format": IMPROVED_FORMAT,
        "version": 1,
        "kind": kind,
        "method": method_cfg,
        "reward": reward,
        "policy": to_dict(base.cfg),
        "base_sha256": base_sha256,
    }
    if subtask is not None:
        meta["subtask"] = subtask
    atomic_write_json(Path(run_dir) / "config.json", meta)


def read_improved_config(directory: Path) -> dict[str, Any]:
    """config.json of an improved run, checked."""
    path = Path(directory) / "config.json"
    meta = read_json(path)
    if not isinstance(meta, dict) or meta.get("format") != IMPROVED_FORMAT:
        raise ScorePolicyError(
            f"{path}: not an improved-policy config (field 'format' must be '{IMPROVED_FORMAT}')"
        )
    for key in ("kind", "method", "base_sha256"):
        if key not in meta:
            raise ScorePolicyError(f"{path}: field '{key}' missing; re-run scorepolicy improve")
    return meta


def load_verified_base(directory: Path) -> ChunkPolicy:
    """The base policy stored in an improved run, after checking its weights against the recorded hash;
    its sampling settings are the improved run's (config.json 'policy', e.g. a --sampler override)."""
    meta = read_improved_config(directory)
    weights = Path(directory) / BASE_DIR / "model.safetensors"
    if not weights.is_file():
        raise ScorePolicyError(f"{weights}: base weights missing; the improved run is incomplete")
    if sha256_file(weights) != meta["base_sha256"]:
        raise ScorePolicyError(
            f"{weights}: sha256 does not match config.json's base_sha256; the base copy was changed, restore it"
        )
    base = ChunkPolicy.from_pretrained(Path(directory) / BASE_DIR)
    if "policy" in meta:
        from scorepolicy.files import from_dict
        from scorepolicy.policies import PolicyConfig

        cfg = from_dict(PolicyConfig, meta["policy"], f"{directory}/config.json: policy")
        if (cfg.obs_dim, cfg.action_dim, cfg.horizon) != (
            base.cfg.obs_dim,
            base.cfg.action_dim,
            base.cfg.horizon,
        ):
            raise ScorePolicyError(f"{directory}/config.json: 'policy' does not match the base copy's config")
        base.cfg = cfg
    return base


def freeze_base(base: ChunkPolicy) -> ChunkPolicy:
    """Frozen base for RL: no gradients, eval mode, fast inference."""
    for p in base.parameters():
        p.requires_grad_(False)
    return base.optimize_for_inference()


# ---------------------------------------------------------------- RNG state (JSON/tensors, never pickled)
def rng_state() -> dict[str, Any]:
    """Python, numpy and torch global RNG states as JSON-able values and a tensor."""
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    py = random.getstate()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [str(name), np.asarray(keys).tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state().tolist(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), int(n[2]), int(n[3]), float(n[4])))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
