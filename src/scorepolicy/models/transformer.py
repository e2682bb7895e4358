"""Transformer denoiser: a σ token, observation-history tokens and noisy action-chunk tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from scorepolicy.models.embeddings import SigmaEmbedding


@dataclass
class TransformerConfig:
    """Transformer (encoder-only, pre-norm) denoiser."""

    d_model: int = 128
    """Token width."""
    n_layers: int = 4
    """Number of transformer layers."""
    n_heads: int = 4
    """Attention heads per layer."""
    ff_mult: int = 4
    """Feed-forward width as a multiple of d_model."""
    dropout: float = 0.0
    """Dropout inside the transformer layers."""


class TransformerDenoiser(nn.Module):
    """F(c_in·x, σ-features, cond): every token attends to all others; actions are read off their tokens."""

    def __init__(
        self, cfg: TransformerConfig, obs_dim: int, n_obs_steps: int, action_dim: int, horizon: int
    ) -> None:
        super().__init__()
        d = cfg.d_model
        self.obs_proj = nn.Linear(obs_dim, d)
        self.obs_pos = nn.Parameter(torch.zeros(1, n_obs_steps, d))
        self.act_proj = nn.Linear(action_dim, d)
        self.act_pos = nn.Parameter(torch.zeros(1, horizon, d))
        nn.init.normal_(self.obs_pos, std=0.02)
        nn.init.normal_(self.act_pos, std=0.02)
        self.sigma_embedding = SigmaEmbedding(d)
        layer = nn.TransformerEncoderLayer(
            d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, action_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.horizon = horizon

    @property
    def goal_width(self) -> int:
        """Width of the goal feature `encode` accepts (one goal token)."""
        return int(self.obs_pos.shape[-1])

    def encode(self, obs: Tensor, goal: Tensor | None = None) -> Tensor:
        """Condition tokens (B, T_o [+1], d): observations, then the goal token if given; once per chunk."""
        tokens = self.obs_proj(obs) + self.obs_pos
        return tokens if goal is None else torch.cat([tokens, goal.unsqueeze(1)], dim=1)

    def sigma_features(self, c_noise: Tensor) -> Tensor:
        """The σ token (N, d) for noise levels c_noise (N,); once per schedule when sampling."""
        return self.sigma_embedding(c_noise)

    def forward(self, x_in: Tensor, sigma_feat: Tensor, cond: Tensor) -> Tensor:
        b = x_in.shape[0]
        sigma_tok = sigma_feat.expand(b, -1).unsqueeze(1)
        tokens = torch.cat([sigma_tok, cond.expand(b, -1, -1), self.act_proj(x_in) + self.act_pos], dim=1)
        h = self.encoder(tokens)[:, -self.horizon :]
        return self.out(self.out_norm(h))
