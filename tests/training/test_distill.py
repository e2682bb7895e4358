"""Consistency distillation: a 1-step student reproduces its teacher's NFE-20 samples (closed-form teacher)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from scorepolicy.data.windows import WindowDataset
from scorepolicy.models import MLPConfig
from scorepolicy.policies import PolicyConfig, ScorePolicy
from scorepolicy.policies.config import DiffusionConfig
from scorepolicy.training.distill import DistillConfig, distill

MEAN = torch.tensor([0.2, -0.3])
STD = torch.tensor([0.3, 0.15])
HORIZON = 4


class ExactGaussianDenoiser(nn.Module):
    """The raw output F whose EDM-preconditioned D(x; σ) = m + s²/(s²+σ²)·(x − m) is the exact denoiser of
    actions ~ N(m, diag s²) (independent over time), whatever the observation."""

    def __init__(self, sigma_data: float) -> None:
        super().__init__()
        self.sigma_data = sigma_data
        self.goal_width = 1

    def encode(self, obs: Tensor, goal: Tensor | None = None) -> Tensor:
        return obs.new_zeros(obs.shape[0], 1)

    def sigma_features(self, c_noise: Tensor) -> Tensor:
        return c_noise.reshape(-1, 1)

    def forward(self, x_in: Tensor, sigma_feat: Tensor, cond: Tensor) -> Tensor:
        sigma = torch.exp(4 * sigma_feat).reshape(-1, 1, 1)
        d2, s2 = self.sigma_data**2, sigma**2
        x = x_in * (s2 + d2).sqrt()
        exact = MEAN + STD**2 / (STD**2 + s2) * (x - MEAN)
        return (exact - d2 / (s2 + d2) * x) / (sigma * self.sigma_data / (s2 + d2).sqrt())


def gaussian_windows(n: int = 4000, seed: int = 0) -> WindowDataset:
    """One long episode whose actions are independent N(m, diag s²) draws (observations irrelevant)."""
    rng = np.random.default_rng(seed)
    act = (MEAN.numpy() + STD.numpy() * rng.normal(size=(n, 2))).astype(np.float32)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    return WindowDataset(obs, act, np.array([n]), n_obs_steps=2, horizon=HORIZON)


def policy(**diffusion: object) -> ScorePolicy:
    cfg = PolicyConfig(
        obs_dim=3,
        action_dim=2,
        horizon=HORIZON,
        n_action_steps=2,
        mlp=MLPConfig(width=64, n_blocks=2, cond_dim=16, sigma_dim=32),
        diffusion=DiffusionConfig(**diffusion),  # type: ignore[arg-type]
    )
    torch.manual_seed(0)
    p = ScorePolicy(cfg)
    unit = {"min": -np.ones(2, np.float32), "max": np.ones(2, np.float32)}
    p.set_normalization(
        {"obs": {"min": -np.ones(3, np.float32), "max": np.ones(3, np.float32)}, "action": unit}
    )
    return p


def test_one_step_student_matches_the_teachers_nfe20_samples(tmp_path: object) -> None:
    torch.set_num_threads(1)
    teacher = policy()
    teacher.denoiser = ExactGaussianDenoiser(teacher.cfg.diffusion.sigma_data)  # type: ignore[assignment]
    student = policy(precond="consistency", nfe=1)
    cfg = DistillConfig(
        steps=1500, batch_size=128, lr=1e-3, log_every=500, checkpoint_every=1500, progress=False
    )
    distill(teacher, student, gaussian_windows(), cfg, tmp_path)  # type: ignore[arg-type]
    loaded = ScorePolicy.from_pretrained(tmp_path)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(5)
    obs, noise = torch.randn(512, 2, 3, generator=gen), torch.randn(512, HORIZON, 2, generator=gen)
    reference = teacher.predict_action_chunk(obs, noise=noise, nfe=20)
    assert torch.allclose(reference.std(dim=(0, 1)), STD, rtol=0.2)  # 20 Euler steps: close to the data's law
    rms = (loaded.predict_action_chunk(obs, noise=noise) - reference).pow(2).mean().sqrt().item()
    base = (teacher.predict_action_chunk(obs, noise=noise, nfe=1) - reference).pow(2).mean().sqrt().item()
    print(f"student NFE 1 RMS {rms:.4f}, teacher NFE 1 RMS {base:.4f}")
    assert base > 0.15  # one step of the teacher collapses to the mean
    assert rms < 0.03, rms  # tolerance: a tenth of the smaller data std... of the law's scale
    assert math.isfinite(rms)
