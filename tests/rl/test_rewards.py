"""One reward definition for both methods: a failure that ends an episode early never pays.

The obstacle task ends an episode at a collision or on leaving the field. With −1 per step until
success (DSRL's old 'success' reward) a crash at step 2 would have returned more than a success at
step 40; the shared `step_reward` charges the steps a failed episode had left.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scorepolicy.envs.registry import get_task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.models import MLPConfig
from scorepolicy.policies import PolicyConfig, ScorePolicy
from scorepolicy.rl.common import step_reward

MAX = 150


def episode_return(kind: str, length: int, success: bool, failed_early: bool) -> float:
    """The summed reward of one episode of `length` steps ending in success, an early failure or the limit."""
    total = 0.0
    for t in range(1, length + 1):
        last = t == length
        left = MAX - t if last and failed_early else 0
        total += step_reward(kind, 0.0, last and success, left)
    return total


@pytest.mark.parametrize("kind", ["success", "coverage"])
def test_failing_early_never_beats_succeeding_late(kind: str) -> None:
    success_late = episode_return(kind, 140, True, False)
    crash_early = episode_return(kind, 2, False, True)
    timeout = episode_return(kind, MAX, False, False)
    assert success_late > crash_early
    assert crash_early == timeout == -MAX
    if kind == "success":
        assert success_late == -139.0


def test_both_methods_share_one_reward() -> None:
    from scorepolicy.rl import dsrl_env, residual_env

    assert dsrl_env.step_reward is step_reward and residual_env.step_reward is step_reward
    assert step_reward("shaped", 0.25, False, 7) == 0.25
    with pytest.raises(ScorePolicyError, match="--reward dense: unknown reward"):
        step_reward("dense", 0.0, False)


def falling_base() -> ScorePolicy:
    """An untrained obstacle-task policy whose raw actions all point down-left: it leaves the field
    within a few steps of the start (y ≈ 0.04), a failure that ends the episode."""
    torch.manual_seed(0)
    cfg = PolicyConfig(
        obs_dim=2, action_dim=2, n_obs_steps=1, horizon=4, n_action_steps=2,
        mlp=MLPConfig(width=32, n_blocks=1, cond_dim=16, sigma_dim=8),
    )  # fmt: skip
    cfg.diffusion.sampler, cfg.diffusion.nfe = "ddim", 2
    policy = ScorePolicy(cfg)
    stats = {"min": np.array([-1.0, -1.0], np.float32), "max": np.array([-0.8, -0.8], np.float32)}
    obs_stats = {"min": np.zeros(2, np.float32), "max": np.ones(2, np.float32)}
    policy.set_normalization({"obs": obs_stats, "action": stats})
    policy.eval().optimize_for_inference()
    return policy


def test_noise_env_charges_the_steps_left_after_a_crash() -> None:
    from scorepolicy.rl.dsrl_env import NoiseVecEnv

    task = get_task("obstacles")
    env = NoiseVecEnv(falling_base(), task, n_envs=2, train_seed=0, reward="success", bound=1.5)
    env.reset()
    returns = np.zeros(2)
    finished = np.zeros(2, dtype=bool)
    for _ in range(4):
        _, rewards, dones, infos = env.step(np.zeros((2, int(np.prod(env.chunk_shape))), np.float32))
        returns += np.where(finished, 0.0, rewards)
        finished |= dones
        assert not any(info["is_success"] for info in infos)
    assert finished.all()
    assert np.array_equal(returns, [-task.max_steps] * 2)


def test_residual_env_charges_the_steps_left_after_a_crash() -> None:
    from scorepolicy.rl.residual_env import ResidualVecEnv

    task = get_task("obstacles")
    env = ResidualVecEnv(falling_base(), task, 2, alpha=0.1, reward="success", train_seed=0, noise_seed=0)
    env.reset()
    for _ in range(10):
        _, _, dones, infos = env.step(np.zeros((2, 2), np.float32))
        if dones.any():
            break
    assert dones.all() and all(i["episode"]["r"] == -task.max_steps for i in infos)
    assert all(not i["TimeLimit.truncated"] for i in infos)
