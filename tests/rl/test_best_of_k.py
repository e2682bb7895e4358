"""Best-of-K policy iteration: the unfitted policy is the base, batched candidates equal single calls,
training raises success on a biased base, save/load gives identical actions, resume equals an
uninterrupted run, Monte-Carlo returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.rl.conftest import rl_context

from scorepolicy.core.task import Task
from scorepolicy.files import load_tensors
from scorepolicy.policies import ChunkPolicy, ScorePolicy
from scorepolicy.rl import best_of_k
from scorepolicy.rl.best_of_k import discounted_returns, train_best_of_k
from scorepolicy.rl.best_of_k_config import BestOfKConfig
from scorepolicy.rl.best_of_k_policy import BestOfKPolicy, QEnsemble
from scorepolicy.rl.curves import Curve, CurveConfig

SMALL = BestOfKConfig(
    episodes_per_iteration=150,
    n_action_steps=None,
    ensemble=2,
    hidden=64,
    layers=2,
    epochs=20,
    batch_size=128,
)
"""Critic and data sizes for a test (seconds on one thread)."""


def _base(bimodal_base: ScorePolicy, path: Path) -> ScorePolicy:
    bimodal_base.save_pretrained(path)
    return ScorePolicy.from_pretrained(path).optimize_for_inference()


def test_discounted_returns() -> None:
    assert discounted_returns([-1.0, -1.0, 0.0], 0.5) == [-1.5, -1.0, 0.0]
    assert discounted_returns([], 0.9) == []


def test_unfitted_policy_is_exactly_the_base(bimodal_base: ScorePolicy) -> None:
    torch.set_num_threads(1)
    policy = BestOfKPolicy.from_base(bimodal_base, SMALL, "success", 2)
    assert not policy.fitted
    obs = np.array([[0.3, -0.5], [-0.9, 0.8], [0.1, 0.1]], dtype=np.float32)
    policy.reset(seeds=[4, 5, 6])
    bimodal_base.reset(seeds=[4, 5, 6])
    for _ in range(5):
        assert np.array_equal(policy.select_action(obs), bimodal_base.select_action(obs))


def test_batched_candidates_equal_single_calls(bimodal_base: ScorePolicy) -> None:
    torch.set_num_threads(1)
    policy = BestOfKPolicy.from_base(bimodal_base, SMALL, "success", 2)
    policy.set_critic(policy.critic.state_dict())  # fitted: scores every candidate
    hist = torch.tensor([[[0.3, -0.5]], [[-0.9, 0.8]], [[0.0, 0.4]]])
    noise = torch.randn(3, 5, 4, 1, generator=torch.Generator().manual_seed(0))
    best, chunks = policy.choose(hist, noise, torch.zeros(3, dtype=torch.long))
    assert chunks.shape == (3, 5, 4, 1) and best.shape == (3,)
    for i in range(3):
        for k in range(5):
            single = bimodal_base.predict_action_chunk(hist[i : i + 1], noise=noise[i, k : k + 1])
            assert torch.allclose(chunks[i, k], single[0], atol=1e-6), (i, k)
        x = policy.critic_input(
            policy.features(hist[i : i + 1].expand(5, -1, -1)),
            policy.normalize("action", chunks[i]),
            torch.zeros(5, dtype=torch.long),
        )
        assert int(best[i]) == int(policy.critic(x).mean(1).argmax())


def test_best_of_k_raises_success_of_a_biased_base(
    bimodal_base: ScorePolicy, reach_task: Task, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    curve = Curve(tmp_path, reach_task, CurveConfig(episodes=100, seed=0, n_envs=50))
    base = _base(bimodal_base, tmp_path / "base")
    before = curve.point(base, 0)["success_rate"]
    ctx = rl_context(base, reach_task, tmp_path / "out", 1000, n_envs=16, evaluate=curve.point)
    policy = train_best_of_k(ctx, SMALL, False)
    after = float(curve.rows()[-1]["success_rate"])
    assert before < 0.6
    assert after >= before + 0.2, (before, after)
    loaded = ChunkPolicy.from_pretrained(tmp_path / "out")
    assert isinstance(loaded, BestOfKPolicy) and loaded.fitted
    obs = np.array([[0.3, -0.5], [-0.9, 0.8]], dtype=np.float32)
    policy.reset(seeds=[3, 4])
    loaded.optimize_for_inference().reset(seeds=[3, 4])
    for _ in range(3):
        assert np.array_equal(policy.select_action(obs), loaded.select_action(obs))


def test_resume_after_a_kill_equals_an_uninterrupted_run(
    bimodal_base: ScorePolicy, reach_task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    cfg = BestOfKConfig(**{**SMALL.__dict__, "episodes_per_iteration": 60, "epochs": 5})
    base = _base(bimodal_base, tmp_path / "base")
    whole = train_best_of_k(rl_context(base, reach_task, tmp_path / "a", 600, n_envs=16), cfg, False)
    real_fit, fits = best_of_k.fit_critic, []

    def killed_in_the_second_fit(*args: Any) -> Any:
        fits.append(1)
        if len(fits) == 2:
            raise KeyboardInterrupt
        return real_fit(*args)

    monkeypatch.setattr(best_of_k, "fit_critic", killed_in_the_second_fit)
    with pytest.raises(KeyboardInterrupt):
        train_best_of_k(rl_context(base, reach_task, tmp_path / "b", 600, n_envs=16), cfg, False)
    monkeypatch.setattr(best_of_k, "fit_critic", real_fit)
    resumed = train_best_of_k(rl_context(base, reach_task, tmp_path / "b", 600, n_envs=16), cfg, True)
    for k, v in whole.critic.state_dict().items():
        assert torch.equal(v, resumed.critic.state_dict()[k]), k
    a, b = (load_tensors(tmp_path / d / "model.safetensors") for d in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for d in "ab":
        assert (tmp_path / d / "rl_state" / "iter1_returns.npy").is_file()
    ra, rb = (np.load(tmp_path / d / "rl_state" / "iter1_returns.npy") for d in "ab")
    assert np.array_equal(ra, rb)


def test_fused_critic_equals_the_member_loop() -> None:
    critic = QEnsemble(7, 4, 32, 3)
    x = torch.randn(9, 7)
    with torch.no_grad():
        loop = critic(x)
    with torch.inference_mode():
        fused = critic(x)
    assert fused.shape == (9, 4) and torch.allclose(fused, loop, atol=1e-5)
    with torch.no_grad():
        critic.members[2][0].weight.add_(1.0)  # a changed weight rebuilds the stacked copy
        loop = critic(x)
    with torch.inference_mode():
        assert torch.allclose(critic(x), loop, atol=1e-5)
