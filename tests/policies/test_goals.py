"""Goal conditioning, goal dropout and classifier-free guidance of the score policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import tiny_config

from scorepolicy.data.windows import WindowDataset, min_max_stats
from scorepolicy.errors import ScorePolicyError
from scorepolicy.policies import ChunkPolicy, GoalConfig, ScorePolicy

N_TASKS, GOAL_DIM, STATE_DIM = 3, 2, 3


def goal_policy(denoiser: str = "mlp", from_observation: bool = True, **goal: object) -> ScorePolicy:
    """A tiny policy whose observations end in [task id, goal (2)] (or that takes explicit goals)."""
    obs_dim = STATE_DIM + (1 + GOAL_DIM if from_observation else 0)
    cfg = tiny_config(denoiser, obs_dim=obs_dim)
    cfg.goal = GoalConfig(n_tasks=N_TASKS, goal_dim=GOAL_DIM, from_observation=from_observation, **goal)  # type: ignore[arg-type]
    torch.manual_seed(0)
    policy = ScorePolicy(cfg)
    box = {"min": -np.ones(2, np.float32), "max": np.ones(2, np.float32)}
    policy.set_normalization(
        {
            "obs": min_max_stats(np.random.default_rng(0).normal(size=(50, STATE_DIM))),
            "action": box,
            "goal": box,
        }
    )
    with torch.no_grad():  # untrained but not degenerate: make D_c differ from D_u
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    return policy.eval()


def obs_with_goal(batch: int, task: int = 1) -> torch.Tensor:
    state = torch.randn(batch, 2, STATE_DIM, generator=torch.Generator().manual_seed(1))
    tail = torch.tensor([float(task), 0.5, -0.5]).expand(batch, 2, 3)
    return torch.cat([state, tail], dim=-1)


@pytest.mark.parametrize("denoiser", ["mlp", "transformer", "mode"])
def test_guidance_interpolates_conditional_and_goal_free(denoiser: str) -> None:
    policy = goal_policy(denoiser)
    policy.cfg.diffusion.sample_sigma_max = 1.0
    obs = obs_with_goal(4)
    noise = torch.randn(4, 4, 2, generator=torch.Generator().manual_seed(2)) * 0.1

    def act(lam: float) -> torch.Tensor:
        return policy.predict_action_chunk(obs, nfe=1, noise=noise, guidance=lam)

    uncond, cond, extra = act(0.0), act(1.0), act(2.0)
    assert uncond.abs().max() < 1 and cond.abs().max() < 1  # away from the clamp: linear in λ
    assert not torch.allclose(uncond, cond, atol=1e-4)
    torch.testing.assert_close(extra, uncond + 2.0 * (cond - uncond), atol=1e-5, rtol=1e-4)


def test_goal_free_output_ignores_the_goal_and_conditional_uses_it() -> None:
    policy = goal_policy()
    noise = torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(3))
    a, b = obs_with_goal(2, task=0), obs_with_goal(2, task=2)
    free = [policy.predict_action_chunk(o, noise=noise, guidance=0.0) for o in (a, b)]
    torch.testing.assert_close(free[0], free[1])
    cond = [policy.predict_action_chunk(o, noise=noise, guidance=1.0) for o in (a, b)]
    assert not torch.allclose(cond[0], cond[1])


def test_explicit_goal_matches_goal_inside_the_observation() -> None:
    inside = goal_policy(from_observation=True)
    explicit = goal_policy(from_observation=False)
    explicit.load_state_dict(inside.state_dict())
    obs = obs_with_goal(3)
    noise = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(4))
    goal = {"task": np.array([1, 1, 1]), "goal": np.array([[0.5, -0.5]] * 3, dtype=np.float32)}
    torch.testing.assert_close(
        inside.predict_action_chunk(obs, noise=noise),
        explicit.predict_action_chunk(obs[..., :STATE_DIM], noise=noise, goal=goal),
    )


def test_bad_goals_get_one_line_errors() -> None:
    policy = goal_policy(from_observation=False)
    obs = torch.zeros(1, 2, STATE_DIM)
    with pytest.raises(ScorePolicyError, match="goal-conditioned"):
        policy.predict_action_chunk(obs)
    with pytest.raises(ScorePolicyError, match="size 2, got size 5"):
        policy.predict_action_chunk(obs, goal={"task": [0], "goal": np.zeros((1, 5))})
    with pytest.raises(ScorePolicyError, match=r"ids in 0\.\.2"):
        policy.predict_action_chunk(obs, goal={"task": [7], "goal": np.zeros((1, 2))})
    with pytest.raises(ScorePolicyError, match="field 'task' missing"):
        policy.predict_action_chunk(obs, goal={"goal": np.zeros((1, 2))})
    assert policy.predict_action_chunk(obs, guidance=0.0).shape == (1, 4, 2)  # goal-free needs no goal


def test_goal_dropout_rate_and_element_mode() -> None:
    policy = goal_policy(dropout=0.3)
    keep = policy.goal_keep_mask(20000, torch.Generator().manual_seed(0))
    assert abs(1 - keep.mean().item() - 0.3) < 0.02
    batch = {"obs": obs_with_goal(64), "action": torch.zeros(64, 4, 2)}
    for mode in ("sample", "element"):
        policy.cfg.goal.dropout_mode = mode  # type: ignore[assignment]
        loss, info = policy.compute_loss(batch, torch.Generator().manual_seed(0))
        assert torch.isfinite(loss) and info["loss"] > 0


def test_goal_conditioned_training_without_goals_is_refused() -> None:
    policy = goal_policy(from_observation=False)
    with pytest.raises(ScorePolicyError, match="no goals"):
        policy.compute_loss({"obs": torch.zeros(2, 2, STATE_DIM), "action": torch.zeros(2, 4, 2)})


def test_goal_policy_save_load_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    policy = goal_policy("mode")
    policy.save_pretrained(tmp_path)
    loaded = ChunkPolicy.from_pretrained(tmp_path)
    assert isinstance(loaded, ScorePolicy) and loaded.cfg == policy.cfg
    obs, noise = obs_with_goal(2), torch.randn(2, 4, 2)
    assert torch.equal(
        policy.predict_action_chunk(obs, noise=noise, guidance=1.5),
        loaded.predict_action_chunk(obs, noise=noise, guidance=1.5),
    )


def test_goal_conditioned_config_on_a_task_without_goals_is_refused_before_training() -> None:
    from scorepolicy.api import make_policy
    from scorepolicy.envs.registry import get_task
    from scorepolicy.policies import PolicyConfig

    task = get_task("obstacles")
    cfg = PolicyConfig(goal=GoalConfig(n_tasks=3))
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(40, task.obs_dim)).astype(np.float32)
    data = WindowDataset(obs, obs[:, : task.action_dim].copy(), np.array([20, 40]), n_obs_steps=2, horizon=16)
    with pytest.raises(ScorePolicyError, match="carries no goals"):
        make_policy(task, cfg, data, seed=0)


def test_observation_noise_touches_only_the_state_and_only_in_training() -> None:
    """obs_noise: Gaussian noise of obs_noise × half-range on the state entries; goal entries untouched."""
    policy = goal_policy()
    obs = obs_with_goal(4000)
    batch = {"obs": obs, "action": torch.zeros(4000, 4, 2)}
    assert policy.train().augment_observations(batch, None) is batch  # off by default
    policy.cfg.obs_noise = 0.05
    assert policy.eval().augment_observations(batch, None) is batch  # never at inference / validation
    noisy = policy.train().augment_observations(batch, torch.Generator().manual_seed(0))["obs"]
    assert torch.equal(noisy[..., STATE_DIM:], obs[..., STATE_DIM:])
    half = (policy.obs_max - policy.obs_min) / 2
    measured = (noisy[..., :STATE_DIM] - obs[..., :STATE_DIM]).reshape(-1, STATE_DIM).std(dim=0)
    assert torch.allclose(measured, 0.05 * half, rtol=0.05)
    again = policy.augment_observations(batch, torch.Generator().manual_seed(0))["obs"]
    assert torch.equal(noisy, again)  # seeded
