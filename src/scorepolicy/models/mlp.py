"""Residual-MLP denoiser: the noisy chunk, conditioned on the observation history and σ by FiLM."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from scorepolicy.models.embeddings import SigmaEmbedding


@dataclass
class MLPConfig:
    """Residual MLP denoiser."""

    width: int = 256
    """Hidden width of the residual blocks."""
    n_blocks: int = 4
    """Number of residual blocks."""
    cond_dim: int = 128
    """Width of the observation encoding."""
    sigma_dim: int = 64
    """Width of the σ embedding."""


class FiLMBlock(nn.Module):
    """h + W2·Mish(W1·Mish(LN(h))·scale + shift); scale (around 1) and shift come from the condition."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        y = self.fc1(nn.functional.mish(self.norm(h)))
        return h + self.fc2(nn.functional.mish(torch.addcmul(shift, y, scale)))


class MLPDenoiser(nn.Module):
    """F(c_in·x, σ-features, cond) for action chunks x of shape (B, T_p, d_a).

    Batch-1 latency is bound by the number of ops, so everything that depends only on the observation
    (computed once per chunk in `encode`) or only on σ (computed once per schedule in `sigma_features`)
    is folded into per-block FiLM terms and a bias of the input layer; a denoiser call runs only the
    residual blocks.
    """

    film_offset: Tensor

    def __init__(self, cfg: MLPConfig, obs_dim: int, n_obs_steps: int, action_dim: int, horizon: int) -> None:
        super().__init__()
        self.horizon, self.action_dim, self.cfg = horizon, action_dim, cfg
        # per block: FiLM scale and shift; plus the input layer's condition-dependent bias
        extra = cfg.n_blocks * 2 * cfg.width + cfg.width
        self.obs_encoder = nn.Sequential(
            nn.Linear(obs_dim * n_obs_steps, cfg.cond_dim), nn.Mish(), nn.Linear(cfg.cond_dim, cfg.cond_dim)
        )
        self.cond_proj = nn.Linear(cfg.cond_dim, extra)
        # FiLM scales are 1 + (learnt terms): the 1 is added once per chunk in `encode`
        offset = torch.zeros(cfg.n_blocks, 2, cfg.width)
        offset[:, 0] = 1.0
        self.register_buffer(
            "film_offset", torch.cat([torch.zeros(cfg.width), offset.flatten()]), persistent=False
        )
        self.sigma_embedding = SigmaEmbedding(cfg.sigma_dim)
        self.sigma_proj = nn.Linear(cfg.sigma_dim, extra)
        self.inp = nn.Linear(horizon * action_dim, cfg.width)
        self.blocks = nn.ModuleList(FiLMBlock(cfg.width) for _ in range(cfg.n_blocks))
        self.out_norm = nn.LayerNorm(cfg.width)
        self.out = nn.Linear(cfg.width, horizon * action_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def goal_width(self) -> int:
        """Width of the goal feature `encode` accepts."""
        return self.cfg.cond_dim

    def encode(self, obs: Tensor, goal: Tensor | None = None) -> Tensor:
        """Condition terms (B, F) from normalised observations (B, T_o, d_o) and goal features (B, cond_dim).

        Computed once per chunk.
        """
        h = self.obs_encoder(obs.flatten(1))
        if goal is not None:
            h = h + goal
        return self.cond_proj(nn.functional.mish(h)) + self.film_offset

    def sigma_features(self, c_noise: Tensor) -> Tensor:
        """σ terms (N, F) for noise levels c_noise (N,); once per schedule when sampling."""
        return self.sigma_proj(nn.functional.mish(self.sigma_embedding(c_noise)))

    def forward(self, x_in: Tensor, sigma_feat: Tensor, cond: Tensor) -> Tensor:
        b, w = x_in.shape[0], self.cfg.width
        terms = cond + sigma_feat
        film = terms[:, w:].reshape(b, self.cfg.n_blocks, 2, w)
        h = self.inp(x_in.flatten(1)) + terms[:, :w]
        for i, block in enumerate(self.blocks):
            h = block(h, film[:, i, 0], film[:, i, 1])
        return self.out(self.out_norm(h)).reshape(b, self.horizon, self.action_dim)
