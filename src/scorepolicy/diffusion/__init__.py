"""Score-based diffusion math: EDM preconditioning and loss, σ densities, schedules, samplers, guidance."""

from scorepolicy.diffusion.densities import sample_log_logistic, sample_log_normal, sample_log_uniform
from scorepolicy.diffusion.edm import Precond, edm_denoise, edm_loss, edm_precond
from scorepolicy.diffusion.guidance import classifier_free_guidance, guide
from scorepolicy.diffusion.random import (
    NoiseSource,
    RowGenerators,
    ShardedGenerator,
    TrainNoise,
    generator_device,
    make_generator,
    randn,
)
from scorepolicy.diffusion.samplers import (
    SAMPLERS,
    get_sampler,
    sample_ddim,
    sample_dpmpp_2m,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
    steps_for_nfe,
)
from scorepolicy.diffusion.schedules import (
    get_sigmas,
    get_sigmas_exponential,
    get_sigmas_karras,
    get_sigmas_linear,
)

__all__ = [
    "SAMPLERS",
    "NoiseSource",
    "Precond",
    "RowGenerators",
    "ShardedGenerator",
    "TrainNoise",
    "classifier_free_guidance",
    "edm_denoise",
    "edm_loss",
    "edm_precond",
    "generator_device",
    "get_sampler",
    "get_sigmas",
    "get_sigmas_exponential",
    "get_sigmas_karras",
    "get_sigmas_linear",
    "guide",
    "make_generator",
    "randn",
    "sample_ddim",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_euler_ancestral",
    "sample_heun",
    "sample_log_logistic",
    "sample_log_normal",
    "sample_log_uniform",
    "steps_for_nfe",
]
