"""Classifier-free guidance for denoisers (Ho & Salimans 2021; BESO's form on the denoised output)."""

from __future__ import annotations

from torch import Tensor

from scorepolicy.diffusion.samplers import Denoiser


def classifier_free_guidance(cond: Denoiser, uncond: Denoiser, scale: float) -> Denoiser:
    """D = D_u + λ(D_c − D_u): λ = 0 is the goal-free policy, 1 the conditional one, > 1 extrapolates."""
    if scale == 1.0:
        return cond
    if scale == 0.0:
        return uncond

    def guided(x: Tensor, sigma: Tensor) -> Tensor:
        d_u = uncond(x, sigma)
        return d_u + scale * (cond(x, sigma) - d_u)

    return guided
