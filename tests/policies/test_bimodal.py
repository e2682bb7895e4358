"""End to end on a toy with two action modes: training + 3-step sampling keep both modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scorepolicy.data.windows import WindowDataset
from scorepolicy.models import MLPConfig
from scorepolicy.policies import PolicyConfig, ScorePolicy
from scorepolicy.training import TrainConfig, train


def test_three_step_sampling_reproduces_both_modes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n_ep, length = 200, 8
    obs = rng.normal(size=(n_ep * length, 2)).astype(np.float32)
    mode = np.repeat(rng.integers(0, 2, n_ep), length)
    # first action dimension: mode ±1 (bimodal); second: a function of the observation
    act = np.stack([np.where(mode == 1, 1.0, -1.0), 0.3 * obs[:, 0]], axis=1).astype(np.float32)
    data = WindowDataset(obs, act, np.arange(1, n_ep + 1) * length, n_obs_steps=1, horizon=2)
    cfg = PolicyConfig(obs_dim=2, action_dim=2, n_obs_steps=1, horizon=2, n_action_steps=2)
    cfg.mlp = MLPConfig(width=64, n_blocks=2, cond_dim=32, sigma_dim=32)
    torch.manual_seed(0)
    policy = ScorePolicy(cfg)
    policy.set_normalization(
        {
            "obs": {"min": obs.min(0), "max": obs.max(0)},
            "action": {"min": np.array([-1.25, -1.5], np.float32), "max": np.array([1.25, 1.5], np.float32)},
        }
    )
    train_cfg = TrainConfig(steps=600, batch_size=128, lr=1e-3, warmup_steps=50, num_threads=1)
    train_cfg.progress = train_cfg.tensorboard = False
    train(policy, data, train_cfg, tmp_path)
    trained = ScorePolicy.from_pretrained(tmp_path)
    obs_batch = torch.zeros(2000, 1, 2)
    obs_batch[:, 0, 0] = 1.0
    first = trained.predict_action_chunk(obs_batch)[:, 0]
    positive = (first[:, 0] > 0).float().mean().item()
    assert 0.35 < positive < 0.65, positive  # both modes, near their data frequency (one half each)
    assert first[:, 0].abs().mean().item() > 0.75  # samples sit near ±1, not blurred to the mean 0
    assert abs(first[:, 1].mean().item() - 0.3) < 0.1  # the observation-dependent part is learnt
