"""Residual RL on a frozen chunk policy (ResFiT-style): the improved policy executes
a = a_base + α·r(s, a_base) per step, in the base's normalised action space, with r ∈ [-1, 1]^d_a from a
zero-initialised tanh head, so before any update it is exactly the base."""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import atomic_save_tensors, from_dict, load_tensors, to_dict
from scorepolicy.policies.base import ChunkPolicy, Goal, frozen_trace
from scorepolicy.rl.common import (
    BASE_DIR,
    load_verified_base,
    read_improved_config,
    sha256_file,
    write_improved_config,
)

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)
OBS_CLAMP = 3.0
"""Normalised observations are clamped to ±3 before the residual networks see them (ResiP)."""
KIND = "residual"


@dataclass
class ResidualConfig:
    """Residual off-policy RL (TD3 from stable-baselines3) on top of a frozen base policy."""

    alpha: float = 0.1
    """Residual scale α: the executed action moves at most α per dimension from the base action, in the
    base's normalised action units ([-1, 1] spans the data's range)."""
    actor_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of the residual actor MLP (ReLU; tanh output, last layer zero-initialised)."""
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of each critic MLP (LayerNorm after every hidden linear layer, ReLU)."""
    n_critics: int = 2
    """Critic ensemble size; the TD target takes the minimum over them."""
    exploration_std: float = 0.05
    """Gaussian exploration noise on r while collecting (r units; ResFiT: 0.05)."""
    target_noise: float = 0.1
    """Target-policy smoothing noise on r (TD3), clipped to ±target_noise_clip."""
    target_noise_clip: float = 0.3
    """Clip of the target-policy smoothing noise."""
    n_step: int = 3
    """n-step returns (SB3's NStepReplayBuffer); 1 = one-step TD."""
    gamma: float = 0.99
    """Discount per env step."""
    batch_size: int = 256
    """Transitions per gradient step."""
    utd: float = 0.25
    """Critic gradient steps per env step (update-to-data ratio); rounded to whole steps per wave of
    n_envs env steps."""
    policy_delay: int = 2
    """Actor (and target-network) update every this many critic updates (TD3)."""
    actor_lr: float = 1e-6
    """Actor learning rate (Adam; ResFiT's 1e-6). Measured on Push-T (15k-step base, 48k env steps):
    1e-5 fell from 34% to 16% success, 1e-6 stayed at the base (42%, 50 validation episodes)."""
    critic_lr: float = 3e-4
    """Critic learning rate (Adam)."""
    tau: float = 0.005
    """Polyak factor of the target networks."""
    grad_clip: float = 1.0
    """Gradient-norm clip for actor and critics (0 = none)."""
    buffer_size: int = 200_000
    """Replay buffer capacity in transitions (checkpoints store it whole)."""
    learning_starts: int = 5_000
    """Env steps with a uniformly random residual r ~ U[-1, 1] before learning starts."""
    critic_warmup: int = 4_000
    """Critic-only gradient steps before the actor is first updated."""


class ResidualActor(nn.Module):
    """r(features) ∈ [-1, 1]^d_a: MLP with ReLU, tanh output; same layout as SB3's TD3 actor `mu`."""

    def __init__(self, in_dim: int, action_dim: int, hidden: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers += [nn.Linear(width, action_dim), nn.Tanh()]
        self.mu = nn.Sequential(*layers)
        zero_last_layer(self.mu)

    def forward(self, x: Tensor) -> Tensor:
        """Residual in r units for features (B, in_dim)."""
        return self.mu(x)


def zero_last_layer(mu: nn.Sequential) -> None:
    """Zero the weights and bias of the last linear layer: the tanh head outputs exactly 0."""
    last = [m for m in mu if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()


def residual_features(base: ChunkPolicy, history: Tensor, base_action_n: Tensor) -> Tensor:
    """What the residual actor and critics see: [normalised observation history (B, T_o·d_o), clamped to
    ±3; the raw goal entries of the last step, if any; the base's current normalised action (B, d_a)]."""
    state, _ = base.split_observation(history)
    obs_n = base.normalize("obs", state).clamp(-OBS_CLAMP, OBS_CLAMP).flatten(1)
    width = base.cfg.goal.obs_width
    parts = [obs_n] if width == 0 else [obs_n, history[:, -1, -width:]]
    return torch.cat([*parts, base_action_n], dim=1)


def feature_dim(base: ChunkPolicy) -> int:
    """Length of `residual_features` for this base."""
    cfg = base.cfg
    state = cfg.obs_dim - cfg.goal.obs_width
    return cfg.n_obs_steps * state + cfg.goal.obs_width + cfg.action_dim


def apply_residual(base: ChunkPolicy, raw_base: Tensor, r: Tensor, alpha: float) -> Tensor:
    """Raw executed actions: the base's raw action moved by α·r in normalised units.

    The moved action is kept inside [-1, 1] unless the base action itself lies outside, so a zero
    residual returns `raw_base` bit for bit and the correction never exceeds α·|r| (normalised units).
    """
    base_n = base.normalize("action", raw_base)
    moved = base_n + alpha * r
    lo, hi = torch.minimum(base_n, base_n.new_tensor(-1.0)), torch.maximum(base_n, base_n.new_tensor(1.0))
    delta = torch.minimum(torch.maximum(moved, lo), hi) - base_n
    half = ((base.action_max - base.action_min) / 2).clamp_min(1e-6)
    return raw_base + delta * half


def base_chunk(
    base: ChunkPolicy, history: Tensor, noise: Tensor, goal: Goal | None = None, nfe: int | None = None
) -> Tensor:
    """The base's raw chunk (B, T_p, d_a) for observation histories, started from `noise` where the base
    samples (score, DDPM); a deterministic base (MSE-BC) ignores it."""
    params = inspect.signature(base.predict_action_chunk).parameters
    kwargs: dict[str, Any] = {"goal": goal}
    if "noise" in params:
        kwargs["noise"] = noise
    if nfe is not None and "nfe" in params:
        kwargs["nfe"] = nfe
    return base.predict_action_chunk(history, **kwargs)


class ResidualPolicy(nn.Module):
    """A frozen base chunk policy plus a learned per-step residual actor (an improved policy).

    Acts like a ChunkPolicy for evaluation: `reset(seed=... | seeds=...)`, batched `select_action`,
    `predict_action_chunk`, `optimize_for_inference`, `save_pretrained` / `from_pretrained`. Its sampling
    noise is the base's (`base.initial_noise`), so a zero residual reproduces the base bit for bit.
    """

    kind = KIND

    def __init__(self, base: ChunkPolicy, method: ResidualConfig, reward: str = "coverage") -> None:
        super().__init__()
        self.base = base.eval()
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.method, self.reward = method, reward
        self.actor = ResidualActor(feature_dim(base), base.cfg.action_dim, list(method.actor_hidden))
        self._fast: list[Any] = []  # the frozen residual graph while optimised for inference
        self._history: deque[Tensor] = deque(maxlen=base.cfg.n_obs_steps)
        self._queue: deque[Tensor] = deque()
        self._goal: Goal | None = None

    @property
    def cfg(self) -> Any:
        """The base's policy config (observation/action sizes, sampler, NFE: inference options apply to it)."""
        return self.base.cfg

    @property
    def obs_min(self) -> Tensor:
        """The base's observation normalisation minimum (what latency and evaluation read)."""
        return self.base.obs_min

    @property
    def obs_max(self) -> Tensor:
        """The base's observation normalisation maximum."""
        return self.base.obs_max

    def inference_path(self) -> str:
        """How the base's chunks are computed (see ChunkPolicy.inference_path); the residual step runs
        as a frozen graph after `optimize_for_inference`."""
        return self.base.inference_path()

    def optimize_for_inference(self) -> ResidualPolicy:
        """Freeze for fast inference: the base's whole-chunk graph, and one frozen TorchScript graph for
        the residual step (features, actor, bounded correction); `set_actor` or `train()` undo the latter."""
        self.base.optimize_for_inference()
        self.actor.eval()
        cfg = self.base.cfg
        example = (torch.zeros(2, cfg.n_obs_steps, cfg.obs_dim), torch.zeros(2, cfg.action_dim))
        fast = frozen_trace(_ResidualStep(self), example, "residual graph", "the eager residual step")
        self._fast[:] = [fast] if fast is not None else []
        return self

    def set_actor(self, state_dict: dict[str, Tensor]) -> None:
        """Load new actor weights (drops the frozen residual graph, which holds the old ones)."""
        self._fast.clear()
        self.actor.load_state_dict(state_dict)

    def train(self, mode: bool = True) -> ResidualPolicy:
        if mode:
            self._fast.clear()
        return super().train(mode)

    def execute(self, history: Tensor, raw_base: Tensor) -> Tensor:
        """Raw executed actions (B, d_a) for observation histories (B, T_o, d_o) and raw base actions."""
        if self._fast:
            return self._fast[0](history, raw_base)
        return apply_residual(self.base, raw_base, self.residual(history, raw_base), self.method.alpha)

    def reset(
        self, seed: int | None = None, goal: Goal | None = None, *, seeds: Sequence[int] | None = None
    ) -> None:
        """Start new episodes: forget history and queued actions; reseed the base's sampling noise (one
        stream with `seed`, one per batch row with `seeds`, as `ChunkPolicy.reset`)."""
        self._history.clear()
        self._queue.clear()
        self._goal = goal
        self.base.reset(seed=seed, goal=goal, seeds=seeds)

    def residual(self, history: Tensor, raw_base: Tensor) -> Tensor:
        """r ∈ [-1, 1]^d_a for observation histories (B, T_o, d_o) and raw base actions (B, d_a)."""
        return self.actor(residual_features(self.base, history, self.base.normalize("action", raw_base)))

    @torch.inference_mode()
    def predict_action_chunk(
        self, obs: Tensor, *, goal: Goal | None = None, nfe: int | None = None, noise: Tensor | None = None
    ) -> Tensor:
        """Raw actions (B, T_p, d_a): the base's chunk with each step's residual computed from these
        observation histories (what the policy executes while the observation stays the same; in closed loop
        `select_action` feeds each step's new observation)."""
        if noise is None:
            noise = self.base.initial_noise(obs.shape[0])
        chunk = base_chunk(self.base, obs, noise, goal, nfe)
        b, t, d = chunk.shape
        hist = obs.float().repeat_interleave(t, dim=0)
        flat = chunk.reshape(b * t, d)
        return self.execute(hist, flat).reshape(b, t, d)

    @torch.inference_mode()
    def select_action(self, obs: ArrayT, goal: Goal | None = None) -> ArrayT:
        """One action per env for observations (B, d_o) or (d_o,); the base re-plans every n_action_steps
        and the residual corrects every step from the current observation history and base action."""
        cfg = self.base.cfg
        is_numpy = isinstance(obs, np.ndarray)
        o = torch.as_tensor(np.asarray(obs, dtype=np.float32) if is_numpy else obs, dtype=torch.float32)
        single = o.ndim == 1
        o = o.reshape(1, -1) if single else o
        if tuple(o.shape[1:]) != (cfg.obs_dim,) or not torch.isfinite(o).all():
            raise ScorePolicyError(
                f"observation: expected finite values of shape (batch, {cfg.obs_dim}), got {tuple(o.shape)}"
            )
        if self._history and self._history[-1].shape[0] != o.shape[0]:
            raise ScorePolicyError("select_action: batch size changed without reset(); call policy.reset()")
        self._history.extend([o] * (cfg.n_obs_steps if not self._history else 1))
        history = torch.stack(list(self._history), dim=1)
        if not self._queue:
            noise = self.base.initial_noise(o.shape[0])
            chunk = base_chunk(self.base, history, noise, goal if goal is not None else self._goal)
            self._queue.extend(chunk[:, : cfg.n_action_steps].unbind(dim=1))
        raw_base = self._queue.popleft()
        action = self.execute(history, raw_base)
        action = action[0] if single else action
        return action.numpy() if is_numpy else action  # type: ignore[return-value]

    # ---------------------------------------------------------------- save / load
    def save_pretrained(self, directory: str | Path) -> None:
        """Write `model.safetensors` (the actor) and `config.json` (kind, method config, reward kind, the
        base's config and the sha256 of its weights); `base/` is written from the base unless the driver
        already copied the base run there."""
        directory = Path(directory)
        weights = directory / BASE_DIR / "model.safetensors"
        if not weights.is_file():
            self.base.save_pretrained(directory / BASE_DIR)
        atomic_save_tensors(directory / "model.safetensors", self.actor.state_dict())
        digest = sha256_file(weights)
        write_improved_config(directory, KIND, to_dict(self.method), self.reward, self.base, digest)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ResidualPolicy:
        """Load an improved run written by `save_pretrained` (the base copy is verified against its hash)."""
        directory = Path(directory)
        meta = read_improved_config(directory)
        if meta["kind"] != KIND:
            raise ScorePolicyError(
                f"{directory / 'config.json'}: holds a '{meta['kind']}' policy, not '{KIND}'"
            )
        method = from_dict(ResidualConfig, meta["method"], f"{directory / 'config.json'}: method")
        policy = cls(load_verified_base(directory), method, str(meta.get("reward", "coverage")))
        path = directory / "model.safetensors"
        if not path.is_file():
            raise ScorePolicyError(f"{path}: residual actor weights missing; the improved run is incomplete")
        tensors = load_tensors(path)
        expected = policy.actor.state_dict()
        if set(tensors) != set(expected) or any(tensors[k].shape != v.shape for k, v in expected.items()):
            raise ScorePolicyError(f"{path}: the actor weights do not match config.json's method settings")
        policy.set_actor(tensors)
        return policy.eval()


class _ResidualStep(nn.Module):
    """`policy.execute` on the eager path, as a module for torch.jit.trace."""

    def __init__(self, policy: ResidualPolicy) -> None:
        super().__init__()
        self.actor = policy.actor
        self._policy = [policy]  # not a submodule: only the traced ops matter

    def forward(self, history: Tensor, raw_base: Tensor) -> Tensor:
        policy = self._policy[0]
        return apply_residual(policy.base, raw_base, policy.residual(history, raw_base), policy.method.alpha)


def _train(ctx: Any, cfg: ResidualConfig, resume: bool) -> ResidualPolicy:
    """`train_residual`, imported on use (it needs stable-baselines3; loading a policy does not)."""
    from scorepolicy.rl.residual_train import train_residual

    return train_residual(ctx, cfg, resume)


METHOD = (ResidualConfig, _train)
"""This method's entry in `scorepolicy.rl.common.METHODS`."""
POLICY_CLASS = ResidualPolicy
"""The improved-policy class of kind 'residual' (what `ChunkPolicy.from_pretrained` returns)."""
