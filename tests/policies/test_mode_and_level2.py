"""MoDE expert caching and level-2 minibatching."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import tiny_config, toy_windows

from scorepolicy.models import MoDEConfig, MoDEDenoiser
from scorepolicy.policies import ScorePolicy


def mode_policy(cache: bool, sampler: str = "ddim") -> ScorePolicy:
    cfg = tiny_config("mode")
    cfg.mode = MoDEConfig(d_model=32, n_layers=2, n_heads=2, n_experts=4, top_k=2, cache_experts=cache)
    cfg.diffusion.sampler = sampler  # type: ignore[assignment]
    torch.manual_seed(0)
    policy = ScorePolicy(cfg)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    return policy.optimize_for_inference()  # type: ignore[return-value]


@pytest.mark.parametrize("sampler", ["ddim", "heun", "dpmpp_2m"])
def test_cached_experts_give_the_same_actions(sampler: str) -> None:
    cached, uncached = mode_policy(True, sampler), mode_policy(False, sampler)
    obs = torch.randn(3, 2, 3)
    noise = torch.randn(3, 4, 2)
    nfe = 4 if sampler == "heun" else 3
    a = cached.predict_action_chunk(obs, noise=noise, nfe=nfe)
    b = uncached.predict_action_chunk(obs, noise=noise, nfe=nfe)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_expert_cache_is_keyed_by_schedule_step() -> None:
    policy = mode_policy(True)
    policy.predict_action_chunk(torch.randn(1, 2, 3))
    (levels,) = policy._schedules.values()
    n_levels = int((levels.sigmas > 0).sum())
    assert len(levels.prepared) == n_levels and all(p is not None for p in levels.prepared)
    assert [levels.level(s) for s in levels.sigmas[:-1]] == list(range(n_levels))
    assert levels.level(torch.tensor(0.123)) is None  # an off-schedule σ falls back to routing


def test_routing_depends_only_on_sigma_and_balance_loss() -> None:
    net = MoDEDenoiser(MoDEConfig(d_model=32, n_layers=2, n_heads=2), 3, 2, 2, 4)
    counts = net.parameter_counts()
    assert counts["active"] < counts["total"]
    feat = net.sigma_features(torch.tensor([0.1]))
    x, cond = torch.randn(5, 4, 2), net.encode(torch.randn(5, 2, 3))
    net(x, feat, cond)
    assert torch.isfinite(net.balance_loss) and net.balance_loss > 0
    block = net.blocks[0]
    idx_a, _, _ = block.route(feat)  # type: ignore[operator]
    idx_b, _, _ = block.route(feat.expand(7, -1))  # type: ignore[operator]
    assert (idx_b == idx_a).all()


@pytest.mark.parametrize("denoiser", ["mlp", "transformer", "mode"])
def test_level2_copies_never_see_each_other(denoiser: str) -> None:
    cfg = tiny_config(denoiser)
    torch.manual_seed(0)
    policy = ScorePolicy(cfg)
    k = 4
    cond = policy.condition(torch.randn(2, 2, 3), None).repeat_interleave(k, dim=0)
    x = torch.randn(2 * k, 4, 2)
    feat = policy.denoiser.sigma_features(torch.randn(2 * k))
    with torch.no_grad():
        for p in policy.denoiser.out.parameters():  # the zero-initialised output layer hides everything
            p.normal_()
        before = policy.denoiser(x, feat, cond)
        x2 = x.clone()
        x2[1] += 5.0  # perturb one copy of the first condition
        after = policy.denoiser(x2, feat, cond)
    changed = (after - before).abs().flatten(1).max(dim=1).values > 1e-6
    assert changed.tolist() == [i == 1 for i in range(2 * k)]


def test_level2_loss_trains() -> None:
    data = toy_windows()
    cfg = tiny_config()
    cfg.diffusion.train_copies = 8
    torch.manual_seed(0)
    policy = ScorePolicy(cfg)
    batch = {k: torch.from_numpy(v) for k, v in data.batch(torch.arange(16).numpy()).items()}
    opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        loss, _ = policy.compute_loss(batch, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])
