"""Samplers against the closed-form denoiser of zero-mean Gaussian data."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor

from scorepolicy.diffusion import (
    SAMPLERS,
    RowGenerators,
    classifier_free_guidance,
    get_sigmas,
    get_sigmas_karras,
    sample_ddim,
    sample_euler,
    sample_heun,
    steps_for_nfe,
)

SIGMA_D = 0.5


def gaussian_denoiser(x: Tensor, sigma: Tensor) -> Tensor:
    """Exact D(x; σ) = σd²/(σd²+σ²)·x for data ~ N(0, σd² I)."""
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return SIGMA_D**2 / (SIGMA_D**2 + s**2) * x


def _start(n: int, dim: int, sigma_max: float, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64) * math.sqrt(sigma_max**2 + SIGMA_D**2)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_recovers_the_data_std(name: str) -> None:
    sigmas = get_sigmas_karras(400, 0.002, 80.0, 7.0).double()  # first-order samplers need many steps
    x = _start(20000, 4, 80.0)
    out = SAMPLERS[name](gaussian_denoiser, x, sigmas, generator=torch.Generator().manual_seed(1))
    assert out.std().item() == pytest.approx(SIGMA_D, rel=0.03)
    assert out.mean().abs().item() < 0.02


def _ode_error(sampler: object, n_steps: int) -> float:
    """Error at σ_min against the exact probability-flow solution x(σ) = x(σ_max)·√((σd²+σ²)/(σd²+σ_max²))."""
    sigma_min, sigma_max = 0.05, 10.0
    sigmas = get_sigmas_karras(n_steps, sigma_min, sigma_max, 7.0, terminal="append")[:-1].double()
    x = _start(64, 2, sigma_max)
    out = sampler(gaussian_denoiser, x, sigmas)  # type: ignore[operator]
    exact = x * math.sqrt((SIGMA_D**2 + sigma_min**2) / (SIGMA_D**2 + sigma_max**2))
    return (out - exact).abs().max().item()


def test_heun_converges_at_second_order_and_euler_at_first() -> None:
    heun = [_ode_error(sample_heun, n) for n in (17, 33, 65)]
    euler = [_ode_error(sample_euler, n) for n in (17, 33, 65)]
    for coarse, fine in itertools.pairwise(heun):
        assert 3.2 < coarse / fine < 4.8, heun
    for coarse, fine in itertools.pairwise(euler):
        assert 1.6 < coarse / fine < 2.4, euler
    assert heun[-1] < euler[-1] / 10


def test_ddim_is_the_euler_step_of_the_ve_ode() -> None:
    sigmas = get_sigmas_karras(5, 0.01, 5.0, 7.0).double()
    x = _start(100, 3, 5.0)
    assert torch.allclose(
        sample_ddim(gaussian_denoiser, x, sigmas), sample_euler(gaussian_denoiser, x, sigmas)
    )


@pytest.mark.parametrize("kind", ["karras", "exponential", "linear"])
@pytest.mark.parametrize("terminal", ["append", "replace"])
def test_schedules_decrease_and_end_in_zero(kind: str, terminal: str) -> None:
    s = get_sigmas(kind, 3, 0.002, 80.0, 7.0, terminal)  # type: ignore[arg-type]
    assert len(s) == 4 and s[0].item() == pytest.approx(80.0) and s[-1].item() == 0.0
    assert torch.all(s[1:] < s[:-1])
    if terminal == "append":
        assert s[-2].item() == pytest.approx(0.002, rel=1e-4)


def test_replace_schedule_spends_every_step() -> None:
    appended = get_sigmas_karras(3, 0.002, 80.0, 7.0, "append")
    replaced = get_sigmas_karras(3, 0.002, 80.0, 7.0, "replace")
    assert appended[2].item() == pytest.approx(0.002, rel=1e-4)
    assert replaced[1:3].tolist() == pytest.approx([9.7, 0.47], rel=0.05)


def test_steps_for_nfe() -> None:
    assert steps_for_nfe("euler", 3) == 3
    assert steps_for_nfe("heun", 3) == 2
    assert steps_for_nfe("heun", 5) == 3
    with pytest.raises(ValueError):
        steps_for_nfe("euler", 0)


def test_ancestral_sampler_depends_on_its_generator_only() -> None:
    sigmas = get_sigmas_karras(5, 0.01, 5.0, 7.0)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0)) * 5
    run = SAMPLERS["euler_ancestral"]
    a = run(gaussian_denoiser, x, sigmas, generator=torch.Generator().manual_seed(3))
    b = run(gaussian_denoiser, x, sigmas, generator=torch.Generator().manual_seed(3))
    c = run(gaussian_denoiser, x, sigmas, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_row_generators_give_each_row_its_own_stream() -> None:
    seeds = [11, 12, 13, 14, 15]
    batch = RowGenerators(seeds).randn((5, 3, 2))
    for i, seed in enumerate(seeds):  # row i is what a lone generator seeded with seeds[i] draws
        assert torch.equal(batch[i], torch.randn(3, 2, generator=torch.Generator().manual_seed(seed)))
    assert torch.equal(RowGenerators(seeds[2:4]).randn((2, 3, 2)), batch[2:4])
    with pytest.raises(ValueError, match="5 rows"):
        RowGenerators(seeds).randn((4, 3, 2))


def test_ancestral_sampler_rows_do_not_depend_on_the_batch() -> None:
    # With one generator for the batch, row 1's noise depends on how many rows precede it; with
    # per-row generators a row samples the same chunk alone or in any batch.
    sigmas = get_sigmas_karras(5, 0.01, 5.0, 7.0)
    seeds = [7, 8, 9, 10]
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)) * 5
    run = SAMPLERS["euler_ancestral"]
    whole = run(gaussian_denoiser, x, sigmas, generator=RowGenerators(seeds))
    for i in range(4):
        alone = run(gaussian_denoiser, x[i : i + 1], sigmas, generator=RowGenerators(seeds[i : i + 1]))
        assert torch.equal(alone[0], whole[i])
    shared = run(gaussian_denoiser, x[1:], sigmas, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(
        shared[0], run(gaussian_denoiser, x, sigmas, generator=torch.Generator().manual_seed(8))[1]
    )


def test_classifier_free_guidance_interpolates_and_skips_passes() -> None:
    calls = {"c": 0, "u": 0}

    def cond(x: Tensor, s: Tensor) -> Tensor:
        calls["c"] += 1
        return torch.ones_like(x)

    def uncond(x: Tensor, s: Tensor) -> Tensor:
        calls["u"] += 1
        return torch.zeros_like(x)

    x, s = torch.zeros(2, 3), torch.ones(2)
    assert classifier_free_guidance(cond, uncond, 0.0)(x, s).eq(0).all()
    assert classifier_free_guidance(cond, uncond, 1.0)(x, s).eq(1).all()
    assert calls == {"c": 1, "u": 1}
    assert classifier_free_guidance(cond, uncond, 1.5)(x, s).eq(1.5).all()
