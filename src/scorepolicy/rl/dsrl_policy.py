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

from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import from_dict, to_dict
from scorepolicy.policies import PolicyConfig, ScorePolicy
from scorepolicy.policies.base import Goal, frozen_trace
from scorepolicy.policies.images import Frames, state_only
from scorepolicy.rl.dsrl_config import DSRLConfig
from scorepolicy.rl.improved import ImprovedScorePolicy

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


class DSRLPolicy(ImprovedScorePolicy):
    """A frozen score policy whose initial noise comes from a learned actor (see module doc)."""

    kind = "dsrl"
    learned = "actor"

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
        obs: Tensor | Frames,
        *,
        goal: Goal | None = None,
        nfe: int | None = None,
        noise: Tensor | None = None,
        guidance: float | None = None,
    ) -> Tensor:
        """Raw action chunks: the base decodes the actor's noise (or the `noise` given)."""
        obs = state_only(obs, "DSRL policies")
        self._check_obs(obs, (self.cfg.n_obs_steps, self.cfg.obs_dim))
        if noise is None:
            noise = self.actor_noise(obs)
        return super().predict_action_chunk(obs, goal=goal, nfe=nfe, noise=noise, guidance=guidance)

    # ---------------------------------------------------------------- save / load
    def method_config(self) -> dict[str, Any]:
        """The DSRL settings saved in config.json."""
        return to_dict(self.dsrl)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> Any:
        """Load an improved run written by `save_pretrained` (the base verified by its hash); CPU only."""
        directory = Path(directory)
        meta, base = cls.read_run(directory, device)
        dsrl = from_dict(DSRLConfig, meta["method"], f"{directory}/config.json: method")
        policy = cls.from_base(base, dsrl, str(meta.get("reward", "success")))
        policy.set_actor(policy.load_learned(directory))
        return policy.eval()
