"""Noise-level embedding shared by the denoisers."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SigmaEmbedding(nn.Module):
    """Fourier features of c_noise = ¼ ln σ at log-spaced frequencies, then a small MLP."""

    freqs: Tensor

    def __init__(self, dim: int, n_freqs: int = 32, max_freq: float = 100.0) -> None:
        super().__init__()
        freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), n_freqs // 2))
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(n_freqs, dim), nn.Mish(), nn.Linear(dim, dim))

    def forward(self, c_noise: Tensor) -> Tensor:
        angles = c_noise.reshape(-1, 1) * self.freqs
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))
