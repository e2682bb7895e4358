"""The two scores: batched B-sample call, binned entropy, RND novelty on a toy task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scorepolicy.diffusion.random import RowGenerators
from scorepolicy.guard.scores import (
    RND,
    Novelty,
    RNDConfig,
    chunk_entropy,
    monitor_seeds,
    sample_chunks,
)
from scorepolicy.policies import ChunkPolicy
from tests.evaluation.conftest import stochastic_policy


def _policy(sampler: str) -> ChunkPolicy:
    policy = stochastic_policy(obs_dim=2, action_dim=2)
    policy.cfg.diffusion.sampler = sampler  # type: ignore[assignment]
    return policy


@pytest.mark.parametrize("sampler", ["ddim", "euler_ancestral"])
@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("encoded", [False, True])
def test_batched_b_samples_equal_b_seeded_single_calls(sampler: str, frozen: bool, encoded: bool) -> None:
    """One batched call (the policy's own rows + B monitor rows per episode) gives, bit for bit, the chunks
    of B separate batch-1 calls seeded with the monitor seeds, and the policy's own chunks unchanged; also
    when every row reuses its history's embedding (`encoded`) instead of encoding the observation again."""
    policy = _policy(sampler)
    if frozen:
        policy.optimize_for_inference()
    n, b = 3, 5
    history = torch.randn(n, policy.cfg.n_obs_steps, 2, generator=torch.Generator().manual_seed(0))
    cond = None
    if encoded:
        # as GuardedPolicy: the novelty graph's embeddings where the whole chunk runs as a graph
        cond = torch.cat([policy.observation_embedding(history[i : i + 1]) for i in range(n)])
        if policy.inference_path() == "torch-graph":
            cond = Novelty(policy, RND(cond.shape[1], RNDConfig(width=8, out_dim=4))).scored(history)[0]
    episode_seeds = [11, 12, 13]
    policy.reset(seeds=episode_seeds)
    own, sampled = sample_chunks(
        policy, history, RowGenerators(monitor_seeds(episode_seeds, b)), b, cond=cond
    )
    assert own is not None and sampled.shape == (n, b, policy.cfg.horizon, 2)
    policy.reset(seeds=episode_seeds)
    alone = policy.predict_action_chunk(history)  # the unguarded policy's chunks
    assert torch.equal(own, alone)
    seeds = monitor_seeds(episode_seeds, b)
    for i in range(n):
        for j in range(b):
            with policy.noise_from(RowGenerators([seeds[i * b + j]])):
                single = policy.predict_action_chunk(history[i : i + 1])
            assert torch.equal(sampled[i, j], single[0]), (i, j)
    assert len(set(seeds)) == n * b and not set(seeds) & set(episode_seeds)


def test_samples_only_call_with_one_noise_stream() -> None:
    """A policy on one stream (reset(seed=)) still gets its own chunk as unguarded, in a separate call."""
    policy = _policy("euler_ancestral")
    history = torch.zeros(2, policy.cfg.n_obs_steps, 2)
    policy.reset(seed=3)
    own, _ = sample_chunks(policy, history, RowGenerators(monitor_seeds([1, 2], 4)), 4)
    policy.reset(seed=3)
    assert own is not None and torch.equal(own, policy.predict_action_chunk(history))


def test_chunk_entropy_known_values() -> None:
    cell = torch.tensor([1.0, 1.0])
    same = torch.zeros(1, 8, 3, 2)
    spread = torch.arange(8.0).reshape(1, 8, 1, 1).expand(1, 8, 3, 2) * 10
    two = torch.cat([torch.zeros(1, 4, 3, 2), torch.full((1, 4, 3, 2), 5.0)], dim=1)
    near = torch.rand(1, 8, 3, 2, generator=torch.Generator().manual_seed(0)) * 0.5  # all in one cell
    out = chunk_entropy(torch.cat([same, spread, two, near]), cell)
    assert out.tolist() == pytest.approx([0.0, math.log2(8), 1.0, 0.0])


def _toy_histories(rng: np.random.Generator, n: int, shift: float) -> torch.Tensor:
    """Point-task observation histories: [position, target] in [-1, 1]² (+ shift on the position)."""
    obs = rng.uniform(-1, 1, size=(n, 1, 2))
    obs[..., 0] += shift
    return torch.as_tensor(np.repeat(obs, 2, axis=1), dtype=torch.float32)


def test_rnd_score_rises_out_of_distribution_and_not_in_distribution() -> None:
    """RND fitted on the policy's embeddings of in-distribution observations: fresh in-distribution
    observations score like the fitting ones; observations with the point far outside score much higher."""
    policy = _policy("ddim")
    rng = np.random.default_rng(0)
    embed = policy.observation_embedding
    z_fit = embed(_toy_histories(rng, 2000, 0.0)).clone()
    cfg = RNDConfig(width=64, out_dim=16, steps=1500, seed=0)
    rnd = RND(z_fit.shape[1], cfg)
    rnd.fit(z_fit, cfg)
    with torch.inference_mode():
        train = rnd(z_fit).mean().item()
        fresh = rnd(embed(_toy_histories(rng, 500, 0.0))).mean().item()
        ood = rnd(embed(_toy_histories(rng, 500, 2.5))).mean().item()
    assert fresh < 1.5 * train
    assert ood > 5 * fresh
    before = rnd(embed(_toy_histories(rng, 500, 2.5))).mean().item()
    assert before == pytest.approx(ood, rel=0.2)  # a score, not a random draw
