"""Samplers for the probability-flow ODE / reverse SDE of a VE (EDM) diffusion, as small pure functions.

Every sampler has one signature: `sample_<name>(denoise, x, sigmas, *, generator=None, callback=None)`.
`denoise(x, sigma) -> x0_hat` is the preconditioned denoiser D(x; σ) with the condition and guidance
already closed over; `sigma` is passed as a (B,) tensor. `sigmas` is a decreasing schedule ending in 0
(see `schedules.py`), as a tensor or as plain floats (`tensor.tolist()`): with floats the deterministic
samplers branch on Python numbers only, so that `torch.export` can trace a whole chunk into one graph. A
tensor schedule may stay on the CPU while `x` is on another device: its 0-dim entries broadcast like
numbers, and the branches on σ need no device synchronisation (`denoise` receives σ on the schedule's
device). `x` starts as σ_0 · N(0, I). `callback(i, x, sigma, denoised)` sees every step.
Stochastic samplers draw their noise from `generator`: one `torch.Generator` for the batch, or
`RowGenerators` (one stream per row, so a row's samples do not depend on the batch it is in).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

from scorepolicy.diffusion.random import NoiseSource, randn

Denoiser = Callable[[Tensor, Tensor], Tensor]
Level = Tensor | float
"""One noise level of a schedule: a 0-d tensor, or a float of a schedule given as floats."""
Sigmas = Tensor | Sequence[float]
"""A decreasing schedule ending in 0, as a tensor or as plain floats."""
Callback = Callable[[int, Tensor, Level, Tensor], None] | None
SamplerName = Literal["euler", "heun", "ddim", "dpmpp_2m", "euler_ancestral"]


def _call(denoise: Denoiser, x: Tensor, sigma: Level) -> Tensor:
    if isinstance(sigma, Tensor):
        return denoise(x, sigma.expand(x.shape[0]))
    return denoise(x, x.new_full((x.shape[0],), sigma))


def _log(v: Level) -> Level:
    return v.log() if isinstance(v, Tensor) else math.log(v)


def sample_euler(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Sigmas,
    *,
    generator: NoiseSource | None = None,
    callback: Callback = None,
) -> Tensor:
    """Euler steps on dx/dσ = (x − D(x; σ))/σ (Karras et al. 2022, Alg. 1 without the correction)."""
    for i in range(len(sigmas) - 1):
        denoised = _call(denoise, x, sigmas[i])
        if callback is not None:
            callback(i, x, sigmas[i], denoised)
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


def sample_heun(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Sigmas,
    *,
    generator: NoiseSource | None = None,
    callback: Callback = None,
) -> Tensor:
    """Heun's second-order method (Karras et al. 2022, Alg. 1); the final step to σ = 0 is Euler."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _call(denoise, x, sigma)
        if callback is not None:
            callback(i, x, sigma, denoised)
        d = (x - denoised) / sigma
        x_euler = x + d * (sigma_next - sigma)
        if sigma_next == 0:
            x = x_euler
            continue
        d_next = (x_euler - _call(denoise, x_euler, sigma_next)) / sigma_next
        x = x + (d + d_next) / 2 * (sigma_next - sigma)
    return x


def sample_ddim(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Sigmas,
    *,
    generator: NoiseSource | None = None,
    callback: Callback = None,
) -> Tensor:
    """Deterministic DDIM (η = 0) in VE form: x' = (σ'/σ)·x + (1 − σ'/σ)·D(x; σ).

    For a VE diffusion this is algebraically the Euler step of the probability-flow ODE (Karras et al.
    2022, §3); it is kept under its own name because BESO and DSRL configure samplers by it.
    """
    for i in range(len(sigmas) - 1):
        denoised = _call(denoise, x, sigmas[i])
        if callback is not None:
            callback(i, x, sigmas[i], denoised)
        ratio = sigmas[i + 1] / sigmas[i]
        x = ratio * x + (1 - ratio) * denoised
    return x


def sample_dpmpp_2m(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Sigmas,
    *,
    generator: NoiseSource | None = None,
    callback: Callback = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in t = −ln σ: a multistep second-order correction of DDIM."""
    prev_denoised: Tensor | None = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _call(denoise, x, sigma)
        if callback is not None:
            callback(i, x, sigma, denoised)
        d_hat = denoised
        if prev_denoised is not None and sigma_next > 0:
            h = _log(sigma / sigma_next)
            h_last = _log(sigmas[i - 1] / sigma)
            r = h_last / h
            d_hat = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * prev_denoised
        ratio = sigma_next / sigma
        x = ratio * x + (1 - ratio) * d_hat
        prev_denoised = denoised
    return x


def ancestral_step(sigma: Tensor, sigma_next: Tensor, eta: float = 1.0) -> tuple[Tensor, Tensor]:
    """Split σ → σ' into a deterministic step to σ_down and fresh noise σ_up, with σ_down² + σ_up² = σ'²."""
    sigma_up = torch.minimum(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2).sqrt())
    return (sigma_next**2 - sigma_up**2).sqrt(), sigma_up


def sample_euler_ancestral(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    generator: NoiseSource | None = None,
    callback: Callback = None,
) -> Tensor:
    """Euler-ancestral: an Euler step to σ_down, then fresh noise of scale σ_up (Song et al. 2021 reverse SDE)."""
    for i in range(len(sigmas) - 1):
        denoised = _call(denoise, x, sigmas[i])
        if callback is not None:
            callback(i, x, sigmas[i], denoised)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1])
        x = x + (x - denoised) / sigmas[i] * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + randn(x.shape, generator, x.dtype, x.device) * sigma_up
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "ddim": sample_ddim,
    "dpmpp_2m": sample_dpmpp_2m,
    "euler_ancestral": sample_euler_ancestral,
}


def get_sampler(name: str) -> Callable[..., Tensor]:
    """Look a sampler up by name."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def steps_for_nfe(sampler: str, nfe: int) -> int:
    """Solver steps that spend `nfe` denoiser calls (Heun: 2 per step, 1 for the last step to σ = 0)."""
    if nfe < 1:
        raise ValueError(f"nfe must be >= 1, got {nfe}")
    return (nfe + 1) // 2 if sampler == "heun" else nfe
