"""Noise-level schedules for sampling. Each returns n_steps + 1 decreasing values ending in 0.

`terminal="append"` follows k-diffusion: n_steps points from σ_max to σ_min, then 0 (the last step
goes σ_min → 0 and, for small σ_min, changes almost nothing). `terminal="replace"` spaces n_steps + 1
points from σ_max to σ_min and replaces the last with 0, so every step moves the sample; at 3 steps
this is what makes few-step sampling work (see docs/DESIGN.md).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

Terminal = Literal["append", "replace"]
ScheduleName = Literal["karras", "exponential", "linear"]


def _finish(sigmas: Tensor, terminal: Terminal) -> Tensor:
    if terminal == "append":
        return torch.cat([sigmas, sigmas.new_zeros(1)])
    sigmas = sigmas.clone()
    sigmas[-1] = 0.0
    return sigmas


def _n_points(n_steps: int, terminal: Terminal) -> int:
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    return n_steps if terminal == "append" else n_steps + 1


def get_sigmas_karras(
    n_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0, terminal: Terminal = "append"
) -> Tensor:
    """Karras et al. (2022) Eq. (5): σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ."""
    n = _n_points(n_steps, terminal)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _finish((hi + ramp * (lo - hi)) ** rho, terminal).float()


def get_sigmas_exponential(
    n_steps: int, sigma_min: float, sigma_max: float, terminal: Terminal = "append"
) -> Tensor:
    """Log-linear spacing: ln σ_i evenly spaced from ln σ_max to ln σ_min."""
    n = _n_points(n_steps, terminal)
    logs = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64)
    return _finish(logs.exp(), terminal).float()


def get_sigmas_linear(
    n_steps: int, sigma_min: float, sigma_max: float, terminal: Terminal = "append"
) -> Tensor:
    """σ_i evenly spaced from σ_max to σ_min."""
    n = _n_points(n_steps, terminal)
    return _finish(torch.linspace(sigma_max, sigma_min, n, dtype=torch.float64), terminal).float()


def get_sigmas(
    name: ScheduleName,
    n_steps: int,
    sigma_min: float,
    sigma_max: float,
    rho: float = 7.0,
    terminal: Terminal = "append",
) -> Tensor:
    """Dispatch to a schedule by name."""
    if name == "karras":
        return get_sigmas_karras(n_steps, sigma_min, sigma_max, rho, terminal)
    if name == "exponential":
        return get_sigmas_exponential(n_steps, sigma_min, sigma_max, terminal)
    if name == "linear":
        return get_sigmas_linear(n_steps, sigma_min, sigma_max, terminal)
    raise ValueError(f"unknown schedule {name!r}; choose karras, exponential or linear")
