"""Training noise-level densities, truncated to [sigma_min, sigma_max] by inverse-CDF sampling."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator) * (hi - lo) + lo


def sample_log_normal(
    n: int,
    p_mean: float,
    p_std: float,
    sigma_min: float,
    sigma_max: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """ln σ ~ N(P_mean, P_std²) truncated to [σ_min, σ_max] (EDM's training density)."""
    normal = torch.distributions.Normal(0.0, 1.0)
    lo = float(normal.cdf(torch.tensor((math.log(sigma_min) - p_mean) / p_std)))
    hi = float(normal.cdf(torch.tensor((math.log(sigma_max) - p_mean) / p_std)))
    u = _uniform(n, lo, hi, generator).clamp(1e-7, 1 - 1e-7)
    return torch.exp(p_mean + p_std * torch.special.ndtri(u)).clamp(sigma_min, sigma_max)


def sample_log_logistic(
    n: int,
    loc: float,
    scale: float,
    sigma_min: float,
    sigma_max: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """ln σ ~ Logistic(loc, scale) truncated to [σ_min, σ_max] (BESO's training density, loc = ln σ_data)."""

    def cdf(s: float) -> float:
        return 1.0 / (1.0 + math.exp(-(math.log(s) - loc) / scale))

    u = _uniform(n, cdf(sigma_min), cdf(sigma_max), generator).clamp(1e-7, 1 - 1e-7)
    return torch.exp(loc + scale * torch.logit(u)).clamp(sigma_min, sigma_max)


def sample_log_uniform(
    n: int, sigma_min: float, sigma_max: float, generator: torch.Generator | None = None
) -> Tensor:
    """ln σ ~ U(ln σ_min, ln σ_max)."""
    return torch.exp(_uniform(n, math.log(sigma_min), math.log(sigma_max), generator))
