"""Denoiser networks, all with one interface.

`encode(obs, goal=None) -> cond` (once per chunk), `sigma_features(c_noise) -> feat` (once per noise level) and
`forward(x_in, feat, cond) -> F`, the raw output that EDM preconditioning scales into D(x; σ).
"""

from scorepolicy.models.goal import GoalEncoder
from scorepolicy.models.mlp import MLPConfig, MLPDenoiser
from scorepolicy.models.mode import MoDEConfig, MoDEDenoiser
from scorepolicy.models.transformer import TransformerConfig, TransformerDenoiser
from scorepolicy.models.unet1d import UNet1DConfig, UNet1DDenoiser
from scorepolicy.models.vision import ImageEncoder, VisionConfig

__all__ = [
    "GoalEncoder",
    "ImageEncoder",
    "MLPConfig",
    "MLPDenoiser",
    "MoDEConfig",
    "MoDEDenoiser",
    "TransformerConfig",
    "TransformerDenoiser",
    "UNet1DConfig",
    "UNet1DDenoiser",
    "VisionConfig",
]
