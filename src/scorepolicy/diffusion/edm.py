"""EDM preconditioning and loss (Karras et al. 2022, Table 1), in the paper's notation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

# F(c_in·x, c_noise) -> raw network output; the condition is closed over by the caller.
RawNet = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Precond:
    """The four EDM scalings for a batch of noise levels sigma (shape (B,), broadcast by the caller)."""

    c_skip: Tensor
    c_out: Tensor
    c_in: Tensor
    c_noise: Tensor


def edm_precond(sigma: Tensor, sigma_data: float) -> Precond:
    """Eq. (7)/Table 1: c_skip = σd²/(σ²+σd²), c_out = σσd/√(σ²+σd²), c_in = 1/√(σ²+σd²), c_noise = ¼ln σ."""
    s2, d2 = sigma**2, sigma_data**2
    return Precond(
        c_skip=d2 / (s2 + d2),
        c_out=sigma * sigma_data / (s2 + d2).sqrt(),
        c_in=1.0 / (s2 + d2).sqrt(),
        c_noise=sigma.log() / 4.0,
    )


def consistency_precond(sigma: Tensor, sigma_data: float, sigma_min: float) -> Precond:
    """Consistency models' scalings in EDM form (Song et al. 2023, App. C): c_skip = σd²/((σ−σmin)²+σd²),
    c_out = σd(σ−σmin)/√(σ²+σd²), so D(x; σ_min) = x exactly (the boundary condition); c_in, c_noise as EDM."""
    p = edm_precond(sigma, sigma_data)
    shifted = sigma - sigma_min
    d2 = sigma_data**2
    return Precond(
        c_skip=d2 / (shifted**2 + d2),
        c_out=shifted * sigma_data / (sigma**2 + d2).sqrt(),
        c_in=p.c_in,
        c_noise=p.c_noise,
    )


def _expand(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(v.shape[0], *([1] * (like.ndim - 1)))


def edm_denoise(
    net: RawNet, x: Tensor, sigma: Tensor, sigma_data: float, precond: Precond | None = None
) -> Tensor:
    """Eq. (7): D(x; σ) = c_skip·x + c_out·F(c_in·x; c_noise); `precond`, if given, is edm_precond of
    this σ computed beforehand (shape (1,) broadcasts over the batch)."""
    p = edm_precond(sigma, sigma_data) if precond is None else precond
    return _expand(p.c_skip, x) * x + _expand(p.c_out, x) * net(_expand(p.c_in, x) * x, p.c_noise)


def edm_loss(net: RawNet, x0: Tensor, sigma: Tensor, noise: Tensor, sigma_data: float) -> Tensor:
    """Eq. (8) with λ(σ) = 1/c_out²: per-sample ‖F(c_in·(x0+σn)) − (x0 − c_skip·(x0+σn))/c_out‖², mean over dims."""
    p = edm_precond(sigma, sigma_data)
    x = x0 + _expand(sigma, x0) * noise
    target = (x0 - _expand(p.c_skip, x0) * x) / _expand(p.c_out, x0)
    out = net(_expand(p.c_in, x0) * x, p.c_noise)
    return (out - target).pow(2).flatten(1).mean(dim=1)
