"""Per-episode sampling noise: a batch row's actions, and so an episode's record, do not depend on the batch.

The policies here are stochastic for real: an untrained tiny ScorePolicy sampling with Euler-ancestral
(fresh noise at every step) and the DDPM baseline (ancestral DDPM), so a test that shares one noise
stream across a batch fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from tests.evaluation.conftest import stochastic_policy

from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.waves import run_rollouts
from scorepolicy.models import MoDEConfig, TransformerConfig, UNet1DConfig
from scorepolicy.policies import PolicyConfig, build_policy


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


class OneStreamPolicy:
    """A policy whose `reset` takes only `seed`: one noise stream for the whole wave (the old way)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def reset(self, seed: int | None = None) -> None:
        self.policy.reset(seed=seed)

    def select_action(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(self.policy.select_action(obs))


SEEDS = list(range(1000, 1014))


def test_rollout_records_are_identical_for_any_n_envs(point_task: Callable[..., Task]) -> None:
    task = point_task(max_steps=12)
    policy = stochastic_policy()
    reference = run_rollouts(policy, task, SEEDS, n_envs=1, progress=False)
    assert len({(r["length"], round(r["return"], 6)) for r in reference}) == len(SEEDS)  # noise-driven
    for n_envs in (3, 7):
        assert run_rollouts(policy, task, SEEDS, n_envs=n_envs, progress=False) == reference
    # The control: with one noise stream per wave the same episodes come out differently.
    shared = OneStreamPolicy(stochastic_policy())
    one = run_rollouts(shared, task, SEEDS, n_envs=1, progress=False)
    assert run_rollouts(shared, task, SEEDS, n_envs=7, progress=False) != one


def test_rollout_records_are_identical_with_env_workers(point_task: Callable[..., Task]) -> None:
    task = point_task(max_steps=12, crash_seed=1005)
    policy = stochastic_policy("ddpm")
    reference = run_rollouts(policy, task, SEEDS, n_envs=1, progress=False)
    assert any("error" in r for r in reference)
    workers = run_rollouts(policy, task, SEEDS, n_envs=7, env_workers=2, progress=False)
    assert workers == reference


@pytest.mark.parametrize("denoiser", ["mlp", "transformer", "mode", "unet1d"])
def test_a_rows_chunk_has_the_same_bits_at_any_batch_size(denoiser: str) -> None:
    # Per-row noise makes records batch-independent only if the network gives a row the same bits in
    # any batch; on this CPU (MKL) it does, for every denoiser, eager and frozen (checked up to 200).
    cfg = PolicyConfig(
        obs_dim=5,
        action_dim=2,
        horizon=8,
        n_action_steps=4,
        denoiser=denoiser,  # type: ignore[arg-type]
        transformer=TransformerConfig(d_model=32, n_layers=2),
        mode=MoDEConfig(d_model=32, n_layers=2),
        unet1d=UNet1DConfig(down_dims=(16, 32, 64), cond_dim=32, sigma_dim=32),
    )
    torch.manual_seed(0)
    policy = build_policy(cfg).eval()
    if denoiser == "unet1d":  # its output layer starts at zero: make the network's bits show
        torch.nn.init.normal_(policy.denoiser.out.weight, std=0.1)  # type: ignore[union-attr]
    gen = torch.Generator().manual_seed(1)
    obs, noise = torch.randn(64, 2, 5, generator=gen), torch.randn(64, 8, 2, generator=gen)
    for _ in ("eager", "frozen"):
        whole = policy.predict_action_chunk(obs, noise=noise)
        for rows in (slice(0, 1), slice(17, 18), slice(63, 64), slice(5, 30)):
            assert torch.equal(policy.predict_action_chunk(obs[rows], noise=noise[rows]), whole[rows])
        policy.optimize_for_inference()
