"""DPM-Solver++(2M) against its published update, on a denoiser known in closed form.

Reference: Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
Models", Algorithm 2 (multistep second order, data prediction), written here independently in the paper's
variables: λ = log(α/σ) the half log-SNR, h_i = λ_i − λ_{i−1}, r_i = h_{i−1}/h_i and

    D_i = (1 + 1/(2 r_i)) x_θ(x_{i−1}) − 1/(2 r_i) x_θ(x_{i−2})       (first step: D_1 = x_θ(x_0))
    x_i = (σ_i/σ_{i−1}) x_{i−1} − α_i (e^{−h_i} − 1) D_i

For the VE (EDM) diffusion α = 1, so λ = −log σ. A final step to σ = 0 has h = ∞: the update tends to
x = D, and the multistep correction is dropped there (k-diffusion's convention, first order).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor

from scorepolicy.diffusion import get_sigmas_karras
from scorepolicy.diffusion.samplers import sample_dpmpp_2m

SIGMA_D = 0.5


def gaussian_denoiser(x: Tensor, sigma: Tensor) -> Tensor:
    """Exact D(x; σ) = E[x0 | x] = σd²/(σd²+σ²)·x for data ~ N(0, σd² I) (the optimal x_θ)."""
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return SIGMA_D**2 / (SIGMA_D**2 + s**2) * x


def shifted_denoiser(x: Tensor, sigma: Tensor) -> Tensor:
    """Exact D(x; σ) for data ~ N(μ, diag(s²)) with a different mean and scale per coordinate."""
    mu = torch.linspace(-0.7, 0.9, x.shape[-1], dtype=x.dtype)
    var = torch.linspace(0.05, 0.6, x.shape[-1], dtype=x.dtype) ** 2
    s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
    return mu + var / (var + s2) * (x - mu)


def dpm_solver_pp_2m_reference(denoise: object, x: Tensor, sigmas: list[float]) -> Tensor:
    """Algorithm 2 of the paper for α = 1, written from the paper (not from the package's code)."""
    lam = [-math.log(s) if s > 0 else math.inf for s in sigmas]
    history: list[Tensor] = []  # x_θ at the previous nodes
    for i in range(1, len(sigmas)):
        x_theta = denoise(x, torch.full((x.shape[0],), sigmas[i - 1], dtype=x.dtype))  # type: ignore[operator]
        if sigmas[i] == 0:  # h = ∞: e^{−h} = 0 and σ_i/σ_{i−1} = 0
            x = x_theta
            break
        h = lam[i] - lam[i - 1]
        if history:
            r = (lam[i - 1] - lam[i - 2]) / h
            d = (1 + 1 / (2 * r)) * x_theta - 1 / (2 * r) * history[-1]
        else:
            d = x_theta
        x = (sigmas[i] / sigmas[i - 1]) * x - (math.exp(-h) - 1) * d
        history.append(x_theta)
    return x


def _start(n: int, dim: int, sigma_max: float, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64) * math.sqrt(sigma_max**2 + SIGMA_D**2)


@pytest.mark.parametrize("denoiser", [gaussian_denoiser, shifted_denoiser])
@pytest.mark.parametrize(("n_steps", "terminal_zero"), [(2, True), (3, True), (7, True), (5, False)])
def test_dpmpp_2m_equals_the_published_update(denoiser: object, n_steps: int, terminal_zero: bool) -> None:
    sigmas = get_sigmas_karras(n_steps, 0.002, 80.0, 7.0).double()  # ends in 0
    if not terminal_zero:
        sigmas = sigmas[:-1]
    x = _start(256, 6, 80.0)
    got = sample_dpmpp_2m(denoiser, x, sigmas)  # type: ignore[arg-type]
    want = dpm_solver_pp_2m_reference(denoiser, x, sigmas.tolist())
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_dpmpp_2m_uses_the_multistep_correction() -> None:
    # Dropping the correction (D_i = x_θ(x_{i−1}) always) is DDIM; the published update is not.
    sigmas = get_sigmas_karras(6, 0.05, 10.0, 7.0, terminal="append")[:-1].double()
    x = _start(64, 3, 10.0)
    ddim = x
    for s, s_next in itertools.pairwise(sigmas.tolist()):
        ddim = s_next / s * ddim + (1 - s_next / s) * shifted_denoiser(ddim, torch.full((64,), s).double())
    got = sample_dpmpp_2m(shifted_denoiser, x, sigmas)
    assert (got - ddim).abs().max().item() > 1e-3


def _ode_error(n_steps: int) -> float:
    """Error at σ_min against the exact probability-flow solution x(σ) = x(σ_max)·√((σd²+σ²)/(σd²+σ_max²))."""
    sigma_min, sigma_max = 0.05, 10.0
    sigmas = get_sigmas_karras(n_steps, sigma_min, sigma_max, 7.0, terminal="append")[:-1].double()
    x = _start(64, 2, sigma_max)
    out = sample_dpmpp_2m(gaussian_denoiser, x, sigmas)
    first, last = sigmas[0].item(), sigmas[-1].item()
    exact = x * math.sqrt((SIGMA_D**2 + last**2) / (SIGMA_D**2 + first**2))
    return (out - exact).abs().max().item()


def test_dpmpp_2m_converges_to_the_exact_ode_solution_at_second_order() -> None:
    errors = [_ode_error(n) for n in (17, 33, 65, 129, 257)]
    assert errors[-1] < 1e-4
    for coarse, fine in itertools.pairwise(errors):
        assert 3.0 < coarse / fine < 5.0, errors  # halving the step quarters the error
