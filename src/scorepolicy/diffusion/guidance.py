"""Classifier-free guidance for denoisers (Ho & Salimans 2021; BESO's form on the denoised output)."""

from __future__ import annotations

from torch import Tensor

from scorepolicy.diffusion.samplers import Denoiser


def guide(d_cond: Tensor, d_uncond: Tensor, scale: float) -> Tensor:
    """D_u + λ(D_c − D_u) on two denoised outputs (e.g. of one batched pass)."""
    return d_uncond + scale * (d_cond - d_uncond)


def classifier_free_guidance(cond: Denoiser, uncond: Denoiser, scale: float) -> Denoiser:
    """D = D_u + λ(D_c − D_u): λ = 0 is the goal-free policy, 1 the conditional one, > 1 extrapolates."""
    if scale == 1.0:
        return cond
    if scale == 0.0:
        return uncond

    def guided(x: Tensor, sigma: Tensor) -> Tensor:
        return guide(cond(x, sigma), uncond(x, sigma), scale)

    return guided
