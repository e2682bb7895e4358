"""The temporal conv U-Net denoiser: shapes at any horizon, save/load, FiLM conditioning, a tiny fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import tiny_config, toy_windows

from scorepolicy.data.windows import min_max_stats
from scorepolicy.errors import ScorePolicyError
from scorepolicy.models import UNet1DConfig, UNet1DDenoiser
from scorepolicy.policies import PolicyConfig, ScorePolicy, build_policy

SMALL = UNet1DConfig(down_dims=(16, 32, 64), n_groups=4, cond_dim=16, sigma_dim=16)


def net(horizon: int, cfg: UNet1DConfig = SMALL) -> UNet1DDenoiser:
    torch.manual_seed(0)
    model = UNet1DDenoiser(cfg, obs_dim=3, n_obs_steps=2, action_dim=2, horizon=horizon)
    torch.nn.init.normal_(model.out.weight, std=0.3)  # the output layer starts at zero
    return model


@pytest.mark.parametrize("horizon", [16, 10, 7, 1])
def test_output_has_the_chunks_shape_at_any_horizon(horizon: int) -> None:
    model = net(horizon)
    assert model.padded % 4 == 0 and model.padded - horizon < 4  # three levels: the time axis halves twice
    x = torch.randn(5, horizon, 2)
    for mode in (True, False):  # torch's convolution (training) and the row-wise one (inference)
        model.train(mode)
        out = model(x, model.sigma_features(torch.zeros(1)), model.encode(torch.randn(5, 2, 3)))
        assert out.shape == (5, horizon, 2) and torch.isfinite(out).all()


def test_padding_does_not_leak_into_the_chunk() -> None:
    """A horizon the levels do not divide is zero-padded: the kept steps depend only on the real input."""
    model = net(6).eval()
    feat, cond = model.sigma_features(torch.zeros(1)), model.encode(torch.randn(2, 2, 3))
    x = torch.randn(2, 6, 2)
    padded = torch.nn.functional.pad(x.transpose(1, 2), (0, 2)).transpose(1, 2)
    full = net(8).eval()
    full.load_state_dict(model.state_dict())
    assert torch.allclose(model(x, feat, cond), full(padded, feat, cond)[:, :6], atol=1e-6)


def test_training_and_inference_convolutions_agree() -> None:
    model = net(16)
    x, feat, cond = (
        torch.randn(9, 16, 2),
        model.sigma_features(torch.full((9,), 0.3)),
        model.encode(torch.randn(9, 2, 3)),
    )
    trained = model.train()(x, feat, cond)
    assert torch.allclose(trained, model.eval()(x, feat, cond), atol=1e-5)


def test_film_conditioning_changes_the_output() -> None:
    """Observation and noise level act only through FiLM; both must move the output (and the input does)."""
    model = net(16).eval()
    x, obs = torch.randn(1, 16, 2), torch.randn(2, 2, 3)
    feat = model.sigma_features(torch.tensor([0.1, -0.5]))
    cond = model.encode(obs)
    base = model(x, feat[:1], cond[:1])
    assert (model(x, feat[:1], cond[1:]) - base).abs().max() > 1e-3  # another observation
    assert (model(x, feat[1:], cond[:1]) - base).abs().max() > 1e-3  # another noise level
    with torch.no_grad():
        model.cond_proj.weight.zero_()  # FiLM no longer sees the observation
        model.cond_proj.bias.zero_()
    assert torch.equal(model(x, feat[:1], model.encode(obs[:1])), model(x, feat[:1], model.encode(obs[1:])))


def test_save_load_gives_bit_identical_actions_and_seeds_give_identical_weights(tmp_path: Path) -> None:
    cfg = tiny_config("unet1d")
    cfg.horizon = 6  # not a multiple of the down-sampling: padded
    data = toy_windows()
    policies = []
    for _ in range(2):
        torch.manual_seed(3)
        policies.append(ScorePolicy(cfg))
    assert all(
        torch.equal(a, b)
        for a, b in zip(policies[0].state_dict().values(), policies[1].state_dict().values())
    )
    policy = policies[0]
    policy.set_normalization({"obs": min_max_stats(data.obs), "action": min_max_stats(data.actions)})
    torch.nn.init.normal_(policy.denoiser.out.weight, std=0.3)
    policy.eval().save_pretrained(tmp_path)
    loaded = ScorePolicy.from_pretrained(tmp_path)
    assert loaded.cfg.unet1d == cfg.unet1d
    obs, noise = torch.randn(4, 2, 3), torch.randn(4, 6, 2)
    expected = policy.predict_action_chunk(obs, noise=noise)
    assert torch.equal(loaded.predict_action_chunk(obs, noise=noise), expected)
    assert torch.allclose(
        loaded.optimize_for_inference().predict_action_chunk(obs, noise=noise), expected, atol=1e-5
    )


def test_a_tiny_fit_learns_the_observation_to_action_map() -> None:
    """Actions are a fixed function of the observation: after training, sampled chunks track it far better
    than the untrained network (which returns the noise-free mean of the data)."""
    torch.set_num_threads(1)
    data = toy_windows(n_episodes=8, length=30)
    torch.manual_seed(0)
    policy = ScorePolicy(tiny_config("unet1d"))
    policy.set_normalization({"obs": min_max_stats(data.obs), "action": min_max_stats(data.actions)})
    batch = {k: torch.from_numpy(v) for k, v in data.batch(np.arange(len(data))).items()}
    gen, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)

    def error() -> float:
        policy.eval()
        chunk = policy.predict_action_chunk(batch["obs"], noise=torch.zeros_like(batch["action"]), nfe=5)
        return float((chunk - batch["action"]).abs().mean())

    before = error()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    policy.train()
    for _ in range(300):
        idx = rng.integers(0, len(data), 64)
        loss, _ = policy.compute_loss({k: v[idx] for k, v in batch.items()}, generator=gen)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = error()
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "down_dims",
            (16, 30),
            "unet1d.down-dims: give one or more widths, each a positive multiple of n-groups",
        ),
        ("down_dims", (), "unet1d.down-dims"),
        ("kernel_size", 4, "unet1d.kernel-size: must be odd"),
        ("n_groups", 0, "unet1d.n-groups"),
    ],
)
def test_bad_unet_settings_are_one_line_errors(field: str, value: object, message: str) -> None:
    cfg = PolicyConfig(obs_dim=3, action_dim=2, denoiser="unet1d")
    setattr(cfg.unet1d, field, value)
    with pytest.raises(ScorePolicyError, match=message) as e:
        build_policy(cfg)
    assert "\n" not in str(e.value)
