"""Per-episode sampling noise: a batch row's actions, and so an episode's record, do not depend on the batch.

The policies here are stochastic for real: an untrained tiny ScorePolicy sampling with Euler-ancestral
(fresh noise at every step) and the DDPM baseline (ancestral DDPM), so a test that shares one noise
stream across a batch fails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from scorepolicy.errors import ScorePolicyError
from scorepolicy.models import MLPConfig
from scorepolicy.policies import ChunkPolicy, PolicyConfig, build_policy
from scorepolicy.policies.config import DDPMConfig, DiffusionConfig


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread, as evaluations run."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def stochastic_policy(kind: str = "score", obs_dim: int = 2, action_dim: int = 1) -> ChunkPolicy:
    """An untrained tiny policy whose chunks are driven by its sampling noise (seeded weights)."""
    cfg = PolicyConfig(
        obs_dim=obs_dim,
        action_dim=action_dim,
        horizon=4,
        n_action_steps=2,
        mlp=MLPConfig(width=32, n_blocks=1, cond_dim=16, sigma_dim=16),
        diffusion=DiffusionConfig(sampler="euler_ancestral", nfe=3),
        ddpm=DDPMConfig(inference_steps=5),
    )
    cfg = dataclasses.replace(cfg, kind=kind)  # type: ignore[arg-type]
    torch.manual_seed(0)
    policy = build_policy(cfg)
    policy.set_normalization(
        {
            "obs": {"min": -np.ones(obs_dim), "max": np.ones(obs_dim)},
            "action": {"min": -np.ones(action_dim), "max": np.ones(action_dim)},
        }
    )
    return policy.eval()


@pytest.mark.parametrize("kind", ["score", "ddpm"])
@pytest.mark.parametrize("frozen", [False, True])
def test_each_row_samples_the_same_chunks_alone_or_in_any_batch(kind: str, frozen: bool) -> None:
    policy = stochastic_policy(kind)
    if frozen:
        policy.optimize_for_inference()
    seeds = [100, 101, 102, 103, 104, 105, 106]
    obs = torch.randn(7, 2, 2, generator=torch.Generator().manual_seed(0))

    def chunks(rows: slice) -> list[torch.Tensor]:
        policy.reset(seeds=seeds[rows])
        return [policy.predict_action_chunk(obs[rows]) for _ in range(3)]  # streams advance per chunk

    whole = chunks(slice(0, 7))
    assert not torch.equal(whole[0], whole[1])  # stochastic: successive chunks differ
    for rows in (slice(i, i + 1) for i in range(7)):
        assert all(torch.equal(a, b[rows]) for a, b in zip(chunks(rows), whole))  # bitwise, batch 1 vs 7
    for rows in (slice(0, 3), slice(3, 7)):
        assert all(torch.equal(a, b[rows]) for a, b in zip(chunks(rows), whole))
    policy.reset(seed=100)  # one stream for the whole batch: row 3's draws depend on rows 0..2
    shared = policy.predict_action_chunk(obs)
    policy.reset(seed=100)
    assert not torch.equal(policy.predict_action_chunk(obs[3:4]), shared[3:4])


@pytest.mark.parametrize("kind", ["score", "ddpm"])
def test_initial_noise_reproduces_the_policys_own_draw(kind: str) -> None:
    policy = stochastic_policy(kind)
    obs = torch.randn(3, 2, 2, generator=torch.Generator().manual_seed(1))
    policy.reset(seeds=[5, 6, 7])
    own = [policy.predict_action_chunk(obs) for _ in range(2)]
    policy.reset(seeds=[5, 6, 7])
    given = []
    for _ in range(2):
        noise = policy.initial_noise(3)
        assert noise.shape == (3, 4, 1)
        given.append(policy.predict_action_chunk(obs, noise=noise))
    assert all(torch.equal(a, b) for a, b in zip(own, given))


def test_reset_checks_its_noise_arguments() -> None:
    policy = stochastic_policy()
    with pytest.raises(ScorePolicyError, match="not both"):
        policy.reset(seed=1, seeds=[1])
    policy.reset(seeds=[1, 2])
    with pytest.raises(ScorePolicyError, match="gave 2 rows but the batch has 3"):
        policy.initial_noise(3)
    policy.reset(seed=4)  # back to one stream: any batch size
    assert policy.initial_noise(3).shape == (3, 4, 1)
