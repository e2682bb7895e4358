"""The DSRL-improved policy: the frozen base score policy steered by a small noise actor.

At every chunk the actor maps the observation history to the initial noise w = b·tanh(u) (u sampled
with the policy's seeded generator, or its mean), and the base's deterministic sampler decodes it, so
one chunk costs the base's chunk plus one small MLP. Saved as an improved run: the base in `base/`
(verified by its sha256 on load) and only the actor in `model.safetensors`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scorepolicy.devices import resolve_device
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import atomic_save_tensors, atomic_write_json, from_dict, load_tensors, to_dict
from scorepolicy.policies import PolicyConfig, ScorePolicy
from scorepolicy.policies.base import FORMAT, FORMAT_VERSION, Goal, frozen_trace
from scorepolicy.rl.common import (
    BASE_DIR,
    load_verified_base,
    read_improved_config,
    sha256_file,
    write_improved_config,
)
from scorepolicy.rl.dsrl_config import DSRLConfig

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # stable-baselines3's clamp of the actor's log std


@torch.no_grad()
def start_at_base(mu: Any, log_std: Any, bound: float) -> None:
    """Output layers such that the noise b·tanh(u) starts ≈ N(0, I): μ = 0 and σ = 1/b for every input."""
    assert isinstance(mu, nn.Linear) and isinstance(log_std, nn.Linear)
    for layer in (mu, log_std):
        layer.weight.zero_()
        layer.bias.zero_()
    log_std.bias.fill_(-math.log(bound))


class NoiseActor(nn.Module):
    """Squashed-Gaussian actor with stable-baselines3's SAC layout (`latent_pi`, `mu`, `log_std`), so an
    SB3 actor's state_dict loads into it; outputs in [−1, 1] (times b is the noise)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, layers: int, bound: float) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        for i in range(layers):
            mods += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ReLU()]
        self.latent_pi = nn.Sequential(*mods)
        self.mu = nn.Linear(hidden, out_dim)
        self.log_std = nn.Linear(hidden, out_dim)
        start_at_base(self.mu, self.log_std, bound)

    def forward(self, feats: Tensor, eps: Tensor) -> Tensor:
        """tanh(μ + σ·eps) (eps = 0: the mean, tanh(μ))."""
        h = self.latent_pi(feats)
        mu = self.mu(h)
        std = self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        return torch.tanh(mu + std * eps)


def actor_input_dim(cfg: PolicyConfig) -> int:
    """Size of the actor's input: the normalised state history plus the goal entries of the last step."""
    width = cfg.goal.obs_width
    return cfg.n_obs_steps * (cfg.obs_dim - width) + width


class DSRLPolicy(ScorePolicy):
    """A frozen score policy whose initial noise comes from a learned actor (see module doc)."""

    kind = "dsrl"

    def __init__(self, cfg: PolicyConfig, dsrl: DSRLConfig, reward: str = "success") -> None:
        super().__init__(cfg)
        self.dsrl, self.reward = dsrl, reward
        self.actor = NoiseActor(
            actor_input_dim(cfg), cfg.horizon * cfg.action_dim, dsrl.hidden, dsrl.layers, dsrl.noise_bound
        )
        self._fast_actor: list[Any] = []  # a frozen TorchScript copy of the actor, while optimised

    @classmethod
    def from_base(cls, base: ScorePolicy, dsrl: DSRLConfig, reward: str = "success") -> DSRLPolicy:
        """A DSRL policy on a copy of `base` (actor freshly initialised)."""
        if not isinstance(base, ScorePolicy) or type(base) is not ScorePolicy:
            raise ScorePolicyError(f"DSRL needs a score policy as its base, got a '{base.cfg.kind}' policy")
        policy = cls(base.cfg, dsrl, reward)
        policy.load_state_dict(base.state_dict(), strict=False)
        return policy.eval()

    def optimize_for_inference(self) -> DSRLPolicy:
        """The base's fast inference, plus the actor as one frozen TorchScript graph (less per-op overhead
        at batch 1); `set_actor`, `train()` and `load_state_dict` drop it."""
        super().optimize_for_inference()
        n_in, n_out = actor_input_dim(self.cfg), self.cfg.horizon * self.cfg.action_dim
        with torch.no_grad():
            example = (torch.zeros(2, n_in), torch.zeros(2, n_out))
            fast = frozen_trace(self.actor, example, "actor graph", "eager actor")
        self._fast_actor[:] = [fast] if fast is not None else []
        return self

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._fast_actor.clear()

    def set_actor(self, state: dict[str, Tensor]) -> None:
        """Load actor weights (dropping the frozen actor graph, rebuilt by `optimize_for_inference`)."""
        self.actor.load_state_dict(state)
        self._fast_actor.clear()

    def features(self, obs: Tensor) -> Tensor:
        """Actor input for raw observation histories (B, T_o, obs_dim)."""
        width, state_dim = self.cfg.goal.obs_width, self.cfg.obs_dim - self.cfg.goal.obs_width
        state = self.normalize("obs", obs[..., :state_dim]).flatten(1)
        return torch.cat([state, obs[:, -1, state_dim:]], dim=1) if width else state

    def actor_noise(self, obs: Tensor) -> Tensor:
        """The initial noise (B, H, d_a) the actor chooses for raw observation histories."""
        b = obs.shape[0]
        n = self.cfg.horizon * self.cfg.action_dim
        eps = self.initial_noise(b).reshape(b, n) if self.dsrl.eval_noise == "sample" else torch.zeros(b, n)
        actor = self._fast_actor[0] if self._fast_actor else self.actor
        w = self.dsrl.noise_bound * actor(self.features(obs.float()), eps)
        return w.reshape(b, self.cfg.horizon, self.cfg.action_dim)

    @torch.inference_mode()
    def predict_action_chunk(
        self,
        obs: Tensor,
        *,
        goal: Goal | None = None,
        nfe: int | None = None,
        noise: Tensor | None = None,
        guidance: float | None = None,
    ) -> Tensor:
        """Raw action chunks: the base decodes the actor's noise (or the `noise` given)."""
        self._check_obs(obs, (self.cfg.n_obs_steps, self.cfg.obs_dim))
        if noise is None:
            noise = self.actor_noise(obs)
        return super().predict_action_chunk(obs, goal=goal, nfe=nfe, noise=noise, guidance=guidance)

    # ---------------------------------------------------------------- save / load
    def base_state_dict(self) -> dict[str, Tensor]:
        """The base's weights (everything but the actor)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("actor.")}

    def save_pretrained(self, directory: str | Path, state_dict: dict[str, Tensor] | None = None) -> None:
        """Write an improved run: base/ (unless an identical copy is there), model.safetensors (the actor)
        and config.json."""
        directory = Path(directory)
        weights = directory / BASE_DIR / "model.safetensors"
        atomic_save_tensors(weights, self.base_state_dict())
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "policy": to_dict(self.cfg)}
        atomic_write_json(directory / BASE_DIR / "config.json", meta)
        self.save_actor(directory)

    def save_actor(self, directory: Path) -> None:
        """model.safetensors (the actor) and config.json, for a base copy already in directory/base."""
        atomic_save_tensors(Path(directory) / "model.safetensors", self.actor.state_dict())
        sha = sha256_file(Path(directory) / BASE_DIR / "model.safetensors")
        write_improved_config(directory, self.kind, to_dict(self.dsrl), self.reward, self, sha)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> Any:
        """Load an improved run written by `save_pretrained` (the base verified by its hash); CPU only."""
        if resolve_device(device).type != "cpu":
            raise ScorePolicyError(f"{directory}: RL-improved policies run on the CPU only; use --device cpu")
        directory = Path(directory)
        meta = read_improved_config(directory)
        base = load_verified_base(directory)
        dsrl = from_dict(DSRLConfig, meta["method"], f"{directory}/config.json: method")
        policy = cls.from_base(base, dsrl, str(meta.get("reward", "success")))  # type: ignore[arg-type]
        tensors = load_tensors(directory / "model.safetensors")
        expected = policy.actor.state_dict()
        if set(tensors) != set(expected) or any(tensors[k].shape != v.shape for k, v in expected.items()):
            raise ScorePolicyError(
                f"{directory}/model.safetensors: the actor's tensors do not match config.json's method settings"
            )
        policy.set_actor(tensors)
        return policy.eval()
