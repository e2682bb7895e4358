"""Training noise-level densities, truncated to [sigma_min, sigma_max] by inverse-CDF sampling."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scorepolicy.diffusion.random import TrainNoise, rand

Device = torch.device | str | None


def _uniform(n: int, lo: float, hi: float, generator: TrainNoise | None, device: Device) -> Tensor:
    return rand((n,), generator, device) * (hi - lo) + lo


def _normal_cdf(z: float) -> float:
    """Φ(z) as a Python float (computed in float32 on the CPU, as the densities always have)."""
    return float(torch.distributions.Normal(0.0, 1.0).cdf(torch.tensor(z)))


def sample_log_normal(
    n: int,
    p_mean: float,
    p_std: float,
    sigma_min: float,
    sigma_max: float,
    generator: TrainNoise | None = None,
    device: Device = None,
) -> Tensor:
    """ln σ ~ N(P_mean, P_std²) truncated to [σ_min, σ_max] (EDM's training density)."""
    lo = _normal_cdf((math.log(sigma_min) - p_mean) / p_std)
    hi = _normal_cdf((math.log(sigma_max) - p_mean) / p_std)
    u = _uniform(n, lo, hi, generator, device).clamp(1e-7, 1 - 1e-7)
    return torch.exp(p_mean + p_std * torch.special.ndtri(u)).clamp(sigma_min, sigma_max)


def sample_log_logistic(
    n: int,
    loc: float,
    scale: float,
    sigma_min: float,
    sigma_max: float,
    generator: TrainNoise | None = None,
    device: Device = None,
) -> Tensor:
    """ln σ ~ Logistic(loc, scale) truncated to [σ_min, σ_max] (BESO's training density, loc = ln σ_data)."""

    def cdf(s: float) -> float:
        return 1.0 / (1.0 + math.exp(-(math.log(s) - loc) / scale))

    u = _uniform(n, cdf(sigma_min), cdf(sigma_max), generator, device).clamp(1e-7, 1 - 1e-7)
    return torch.exp(loc + scale * torch.logit(u)).clamp(sigma_min, sigma_max)


def sample_log_uniform(
    n: int,
    sigma_min: float,
    sigma_max: float,
    generator: TrainNoise | None = None,
    device: Device = None,
) -> Tensor:
    """ln σ ~ U(ln σ_min, ln σ_max)."""
    return torch.exp(_uniform(n, math.log(sigma_min), math.log(sigma_max), generator, device))
