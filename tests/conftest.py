"""Shared fixtures: a tiny policy config and small hand-made data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scorepolicy.data.windows import WindowDataset, min_max_stats
from scorepolicy.models import MLPConfig, TransformerConfig, UNet1DConfig
from scorepolicy.policies import PolicyConfig, ScorePolicy


def tiny_config(denoiser: str = "mlp", obs_dim: int = 3, action_dim: int = 2) -> PolicyConfig:
    """A policy small enough to train for a few steps in a test."""
    return PolicyConfig(
        obs_dim=obs_dim,
        action_dim=action_dim,
        n_obs_steps=2,
        horizon=4,
        n_action_steps=2,
        denoiser=denoiser,  # type: ignore[arg-type]
        mlp=MLPConfig(width=32, n_blocks=2, cond_dim=16, sigma_dim=16),
        transformer=TransformerConfig(d_model=32, n_layers=1, n_heads=2),
        unet1d=UNet1DConfig(down_dims=(16, 32), n_groups=4, cond_dim=16, sigma_dim=16),
    )


def toy_windows(n_episodes: int = 6, length: int = 20, seed: int = 0) -> WindowDataset:
    """Random-walk observations with actions that depend on them."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n_episodes * length, 3)).cumsum(axis=0).astype(np.float32)
    act = np.tanh(obs[:, :2] * 0.1).astype(np.float32)
    ends = np.arange(1, n_episodes + 1) * length
    return WindowDataset(obs, act, ends, n_obs_steps=2, horizon=4)


def tiny_policy(denoiser: str = "mlp", data: WindowDataset | None = None) -> ScorePolicy:
    """A seeded tiny policy with normalisation from toy data."""
    data = data or toy_windows()
    torch.manual_seed(0)
    policy = ScorePolicy(tiny_config(denoiser))
    policy.set_normalization({"obs": min_max_stats(data.obs), "action": min_max_stats(data.actions)})
    return policy


@pytest.fixture
def windows() -> WindowDataset:
    return toy_windows()
