"""EDM preconditioning identities and training densities."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from scorepolicy.diffusion import (
    edm_denoise,
    edm_loss,
    edm_precond,
    sample_log_logistic,
    sample_log_normal,
)


def test_precond_gives_unit_variance_input_and_target() -> None:
    sigma_d = 0.5
    sigma = torch.tensor([0.01, 0.5, 3.0, 80.0])
    p = edm_precond(sigma, sigma_d)
    # Var(c_in·(x0 + σn)) = 1 and Var((x0 − c_skip·x)/c_out) = 1 for Var(x0) = σd².
    assert torch.allclose(p.c_in**2 * (sigma_d**2 + sigma**2), torch.ones(4))
    target_var = ((1 - p.c_skip) ** 2 * sigma_d**2 + p.c_skip**2 * sigma**2) / p.c_out**2
    assert torch.allclose(target_var, torch.ones(4), atol=1e-5)
    assert torch.allclose(p.c_noise, sigma.log() / 4)


def test_loss_is_zero_for_the_exact_denoiser() -> None:
    sigma_d = 0.5

    def exact_raw(x_in: Tensor, c_noise: Tensor) -> Tensor:
        # F such that D = c_skip·x + c_out·F equals the Gaussian posterior mean for x0 = 0 data: D = 0
        sigma = (4 * c_noise).exp().reshape(-1, 1)
        p = edm_precond(sigma.flatten(), sigma_d)
        x = x_in / p.c_in.reshape(-1, 1)
        return -(p.c_skip.reshape(-1, 1) * x) / p.c_out.reshape(-1, 1)

    x0 = torch.zeros(5, 3)
    sigma = torch.tensor([0.1, 0.3, 1.0, 5.0, 20.0])
    noise = torch.randn(5, 3)
    assert edm_loss(exact_raw, x0, sigma, noise, sigma_d).abs().max().item() < 1e-6
    assert edm_denoise(exact_raw, x0 + sigma.reshape(-1, 1) * noise, sigma, sigma_d).abs().max() < 1e-5


def test_densities_stay_in_range_and_are_seeded() -> None:
    g = torch.Generator().manual_seed(0)
    s = sample_log_normal(50000, -1.2, 1.2, 0.002, 80.0, generator=g)
    assert s.min() >= 0.002 and s.max() <= 80.0
    assert s.log().median().item() == pytest.approx(-1.2, abs=0.05)
    s2 = sample_log_logistic(
        50000, math.log(0.5), 0.5, 0.005, 1.0, generator=torch.Generator().manual_seed(0)
    )
    assert s2.min() >= 0.005 and s2.max() <= 1.0
    again = sample_log_logistic(
        10, math.log(0.5), 0.5, 0.005, 1.0, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(again, s2[:10])


def test_precomputed_precond_gives_the_same_denoiser() -> None:
    """D(x; σ) with the scalings of one σ computed beforehand (shape (1,)) equals the per-sample ones."""
    torch.manual_seed(0)
    x = torch.randn(5, 16, 2)

    def net(x_in: Tensor, c_noise: Tensor) -> Tensor:
        return torch.tanh(x_in) + c_noise.reshape(-1, 1, 1)

    for s in (0.002, 0.7, 20.0):
        sigma = torch.tensor(s)
        per_sample = edm_denoise(net, x, sigma.expand(5), 0.5)
        pre = edm_denoise(net, x, sigma.expand(5), 0.5, edm_precond(sigma.reshape(1), 0.5))
        assert torch.equal(per_sample, pre)
