"""Baselines on the score policy's backbone, so that differences are the method's (D3IL, METHODS.md §5).

- `MSEBCPolicy` ('mse-bc'): the denoiser network used as a plain regressor of the (normalised) action
  chunk, trained with the mean squared error; one network call per chunk.
- `DDPMPolicy` ('ddpm'): Diffusion Policy's DDPM: ε-prediction on T = 100 discrete steps with the
  squaredcos_cap_v2 β schedule, sampled by ancestral DDPM or DDIM (η = 0) over strided steps, with the
  predicted clean chunk clipped to [-1, 1].

Both take observations, goals, normalisation, the action queue and save/load from `ChunkPolicy`, and the
same MLP / transformer denoiser: `encode(obs)` once per chunk, `sigma_features(c)` per noise level (the
step t/T for DDPM, 0 for MSE-BC), `forward(x_in, features, cond)` per call.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from scorepolicy.diffusion import steps_for_nfe
from scorepolicy.diffusion.random import NoiseSource, TrainNoise, randint, randn
from scorepolicy.errors import ScorePolicyError
from scorepolicy.policies.base import ChunkPolicy, Goal, scalar
from scorepolicy.policies.config import DDPMConfig, DDPMPolicyConfig, MSEBCPolicyConfig, PolicyConfig
from scorepolicy.policies.registry import register_policy

EpsFn = Callable[[Tensor, int], Tensor]
"""ε̂(x_t, t) for a batch at integer step t."""


def _condition(policy: ChunkPolicy, obs: Tensor, goal: Goal | None) -> Tensor:
    """The denoiser condition of raw observation histories (goals from the batch or the observation)."""
    state, found = policy.split_observation(obs.float(), goal)
    if policy.cfg.goal.enabled and not found:
        raise ScorePolicyError("goal: this policy is goal-conditioned; pass goal={'task': …, 'goal': …}")
    return policy.condition(policy.normalize("obs", state), found if policy.cfg.goal.enabled else None)


def _batch_goal(batch: dict[str, Tensor]) -> Goal | None:
    explicit: Goal = {k: batch[k] for k in ("task", "goal") if k in batch}
    return explicit or None


@register_policy("mse-bc")
class MSEBCPolicy(ChunkPolicy):
    """Behaviour cloning with a mean-squared-error loss on the action chunk (same network as the score
    policy: the noisy-chunk input is zero and the noise-level features are those of c = 0)."""

    config_class = MSEBCPolicyConfig

    def _features(self) -> Tensor:
        return self.denoiser.sigma_features(torch.zeros(1, device=self.device))

    def _regress(self, cond: Tensor) -> Tensor:
        x = cond.new_zeros(cond.shape[0], self.cfg.horizon, self.cfg.action_dim)
        net = self._fast[0] if self._fast else self.denoiser
        return net(x, self._features(), cond)

    def compute_loss(
        self, batch: dict[str, Tensor], generator: TrainNoise | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """MSE between the predicted and the demonstrated normalised action chunk."""
        target = self.normalize("action", batch["action"])
        obs = self.augment_observations(batch, generator)["obs"]
        pred = self._regress(_condition(self, obs, _batch_goal(batch)))
        loss = torch.nn.functional.mse_loss(pred, target)
        return loss, {"loss": scalar(loss), "mse": scalar(loss)}

    @torch.inference_mode()
    def predict_action_chunk(self, obs: Tensor, *, goal: Goal | None = None) -> Tensor:
        """Raw actions (B, T_p, d_a) for raw observation histories (B, T_o, d_o): one network call."""
        self._check_obs(obs, (self.cfg.n_obs_steps, self.cfg.obs_dim))
        obs = obs.to(self.device)
        pred = self._regress(_condition(self, obs, goal if goal is not None else self._goal))
        return self.unnormalize("action", pred.clamp(-1.0, 1.0))


# ---------------------------------------------------------------------------------------------------------
# DDPM


def ddpm_alphas_cumprod(cfg: DDPMConfig) -> Tensor:
    """ᾱ_t for t = 0..T−1 (float64) of the configured β schedule."""
    t = cfg.train_steps
    if cfg.beta_schedule == "linear":
        betas = torch.linspace(cfg.beta_start, cfg.beta_end, t, dtype=torch.float64)
    else:  # squaredcos_cap_v2: ᾱ(s) = cos²((s + 0.008)/1.008 · π/2), β_i = min(1 − ᾱ(i+1)/ᾱ(i), 0.999)

        def abar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor(
            [min(1 - abar((i + 1) / t) / abar(i / t), 0.999) for i in range(t)], dtype=torch.float64
        )
    return torch.cumprod(1.0 - betas, dim=0)


def ddpm_timesteps(train_steps: int, inference_steps: int) -> list[int]:
    """Sampling steps, high to low, strided by T // n (diffusers' 'leading' spacing; all T when n = T)."""
    if not 1 <= inference_steps <= train_steps:
        raise ScorePolicyError(f"ddpm.inference_steps must be in 1..{train_steps}, got {inference_steps}")
    ratio = train_steps // inference_steps
    return [i * ratio for i in reversed(range(inference_steps))]


def ddpm_sample(
    eps: EpsFn,
    noise: Tensor,
    alphas_cumprod: Tensor,
    timesteps: list[int],
    *,
    sampler: str = "ddpm",
    clip: bool = True,
    generator: NoiseSource | None = None,
) -> Tensor:
    """Sample from x_T = `noise` down the given steps with ancestral DDPM (fixed-small variance) or DDIM
    (η = 0). Each step predicts x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t (clipped to [-1, 1] with `clip`) and moves
    to the previous listed step (ᾱ = 1 after the last one)."""
    x = noise
    for i, t in enumerate(timesteps):
        a_t = float(alphas_cumprod[t])
        a_prev = float(alphas_cumprod[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
        e = eps(x, t)
        x0 = (x - math.sqrt(1 - a_t) * e) / math.sqrt(a_t)
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
            e = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        if sampler == "ddim":
            x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * e
            continue
        alpha = a_t / a_prev  # the step's α (products over skipped steps)
        beta = 1 - alpha
        mean = (math.sqrt(a_prev) * beta / (1 - a_t)) * x0 + (math.sqrt(alpha) * (1 - a_prev) / (1 - a_t)) * x
        var = beta * (1 - a_prev) / (1 - a_t)
        x = mean
        if i + 1 < len(timesteps) and var > 0:
            x = x + math.sqrt(var) * randn(x.shape, generator, x.dtype, x.device)
    return x


@register_policy("ddpm")
class DDPMPolicy(ChunkPolicy):
    """Diffusion Policy's DDPM baseline (ε-prediction, discrete steps) on the score policy's network."""

    config_class = DDPMPolicyConfig
    alphas_cumprod: Tensor

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__(cfg)
        self.register_buffer("alphas_cumprod", ddpm_alphas_cumprod(cfg.ddpm), persistent=False)
        self._alphas_cumprod_cpu = ddpm_alphas_cumprod(cfg.ddpm)  # read as numbers while sampling

    def _features(self, t: Tensor) -> Tensor:
        return self.denoiser.sigma_features(t.float() / self.cfg.ddpm.train_steps)

    def compute_loss(
        self, batch: dict[str, Tensor], generator: TrainNoise | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """ε-prediction MSE at a uniformly drawn step t of each sample."""
        x0 = self.normalize("action", batch["action"])
        cond = _condition(self, self.augment_observations(batch, generator)["obs"], _batch_goal(batch))
        b = x0.shape[0]
        t = randint(self.cfg.ddpm.train_steps, (b,), generator, x0.device)
        noise = randn(x0.shape, generator, device=x0.device)
        abar = self.alphas_cumprod[t].float().reshape(b, 1, 1)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        loss = torch.nn.functional.mse_loss(self.denoiser(x_t, self._features(t), cond), noise)
        return loss, {"loss": scalar(loss)}

    @torch.inference_mode()
    def predict_action_chunk(
        self, obs: Tensor, *, goal: Goal | None = None, nfe: int | None = None, noise: Tensor | None = None
    ) -> Tensor:
        """Raw actions (B, T_p, d_a) for raw observation histories (B, T_o, d_o); `nfe` overrides the
        number of sampling steps, `noise` (B, T_p, d_a) the initial x_T."""
        cfg = self.cfg
        self._check_obs(obs, (cfg.n_obs_steps, cfg.obs_dim))
        obs = obs.to(self.device)
        cond = _condition(self, obs, goal if goal is not None else self._goal)
        shape = (obs.shape[0], cfg.horizon, cfg.action_dim)
        x_t = self.initial_noise(shape[0]) if noise is None else noise.to(self.device)
        steps = ddpm_timesteps(cfg.ddpm.train_steps, nfe or cfg.ddpm.inference_steps)
        feats = self._features(torch.tensor(steps, device=self.device))
        index = {t: i for i, t in enumerate(steps)}
        net = self._fast[0] if self._fast else self.denoiser

        def eps(x: Tensor, t: int) -> Tensor:
            i = index[t]
            return net(x, feats[i : i + 1], cond)

        x0 = ddpm_sample(
            eps,
            x_t,
            self._alphas_cumprod_cpu,
            steps,
            sampler=cfg.ddpm.sampler,
            clip=cfg.ddpm.clip_sample,
            generator=self.noise_source,
        )
        return self.unnormalize("action", x0.float().clamp(-1.0, 1.0))


def denoiser_calls(policy: ChunkPolicy) -> int:
    """Denoiser calls per action chunk as the policy's sampler makes them (its real NFE): 1 for MSE-BC,
    the sampling steps for DDPM, the solver steps for a score policy (Heun: two per step, one for the
    last step to σ = 0; a guided call runs both conditions in one batched call)."""
    if isinstance(policy, MSEBCPolicy):
        return 1
    if isinstance(policy, DDPMPolicy):
        return policy.cfg.ddpm.inference_steps
    d = policy.cfg.diffusion
    steps = steps_for_nfe(d.sampler, d.nfe)
    return 2 * steps - 1 if d.sampler == "heun" else steps
