"""MoDE denoiser: a transformer whose feed-forward layers are noise-routed mixtures of experts.

The router of every layer sees only the noise-level embedding (Reuss et al. 2024, MoDE), so during
sampling all samples of a step take the same experts, and the chosen experts can be fused into one
MLP per schedule step ahead of time (`prepare`): the cached path computes exactly the same function
with one matrix product pair per layer instead of routing, gathering and one product pair per expert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from scorepolicy.models.embeddings import SigmaEmbedding


@dataclass
class MoDEConfig:
    """Mixture-of-denoising-experts transformer."""

    d_model: int = 128
    """Token width."""
    n_layers: int = 4
    """Transformer layers, each with attention and a mixture-of-experts feed-forward."""
    n_heads: int = 4
    """Attention heads per layer."""
    n_experts: int = 4
    """Experts per layer (MoDE: 4)."""
    top_k: int = 2
    """Experts used per noise level (MoDE: 2)."""
    expert_mult: int = 2
    """Hidden width of one expert as a multiple of d_model."""
    action_group: int = 4
    """Consecutive actions per action token (the chunk of T_p actions becomes T_p / action_group tokens)."""
    balance_weight: float = 0.01
    """Weight of the load-balancing loss (MoDE from scratch: 0.01)."""
    cache_experts: bool = True
    """Fuse the routed experts once per sampling-schedule step and reuse them (same actions, faster)."""


class FusedExperts(NamedTuple):
    """The top-k experts of one layer at one noise level, fused into a single MLP."""

    w1: Tensor
    b1: Tensor
    w2: Tensor
    b2: Tensor


class Experts(nn.Module):
    """E two-layer GELU MLPs d → h → d stored as stacked weights."""

    def __init__(self, n: int, d: int, h: int) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(n, d, h) / math.sqrt(d))
        self.b1 = nn.Parameter(torch.zeros(n, h))
        self.w2 = nn.Parameter(torch.randn(n, h, d) / math.sqrt(h))
        self.b2 = nn.Parameter(torch.zeros(n, d))

    def forward(self, x: Tensor, idx: Tensor, gates: Tensor) -> Tensor:
        """Σ_j gates[b, j]·expert_{idx[b, j]}(x[b]) for tokens x (B, T, d), running only chosen experts."""
        out = torch.zeros_like(x)
        for e in range(self.w1.shape[0]):
            chosen = idx == e
            rows = chosen.any(dim=1).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            gate = (gates * chosen).sum(dim=1)[rows]
            h = F.gelu(x[rows] @ self.w1[e] + self.b1[e]) @ self.w2[e] + self.b2[e]
            out.index_add_(0, rows, h * gate.reshape(-1, 1, 1))
        return out

    def fuse(self, idx: Tensor, gates: Tensor) -> FusedExperts:
        """One MLP equal to Σ_j gates[j]·expert_{idx[j]} (hidden layers side by side)."""
        w1 = torch.cat([self.w1[e] for e in idx.tolist()], dim=1)
        b1 = torch.cat([self.b1[e] for e in idx.tolist()])
        w2 = torch.cat([g * self.w2[e] for e, g in zip(idx.tolist(), gates)], dim=0)
        b2 = (gates.reshape(-1, 1) * self.b2[idx]).sum(dim=0)
        return FusedExperts(w1, b1, w2, b2)


def fused_ffn(x: Tensor, f: FusedExperts) -> Tensor:
    """The fused expert MLP."""
    return F.gelu(x @ f.w1 + f.b1) @ f.w2 + f.b2


class MoDEBlock(nn.Module):
    """Pre-norm attention, then a noise-routed top-k mixture of experts."""

    def __init__(self, cfg: MoDEConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_heads, self.top_k = cfg.n_heads, cfg.top_k
        self.norm1, self.norm2 = nn.RMSNorm(d), nn.RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.router = nn.Linear(d, cfg.n_experts)
        self.experts = Experts(cfg.n_experts, d, cfg.expert_mult * d)

    def attention(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))

    def route(self, sigma_emb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Top-k expert ids (N, k), renormalised gates (N, k) and router probabilities (N, E)."""
        probs = self.router(sigma_emb).softmax(dim=-1)
        gates, idx = probs.topk(self.top_k, dim=-1)
        return idx, gates / gates.sum(dim=-1, keepdim=True), probs

    def forward(self, x: Tensor, sigma_emb: Tensor, fused: FusedExperts | None) -> tuple[Tensor, Tensor]:
        """New tokens and this layer's load-balancing loss (0 on the cached path)."""
        x = x + self.attention(self.norm1(x))
        h = self.norm2(x)
        if fused is not None:
            return x + fused_ffn(h, fused), x.new_zeros(())
        idx, gates, probs = self.route(sigma_emb.expand(x.shape[0], -1))
        load = F.one_hot(idx, probs.shape[-1]).float().sum(dim=1).mean(dim=0) / self.top_k
        balance = probs.shape[-1] * (load * probs.mean(dim=0)).sum()
        return x + self.experts(h, idx, gates), balance


class MoDEDenoiser(nn.Module):
    """F(c_in·x, σ-embedding, cond) with tokens [σ, observations (+ goal), noisy actions]."""

    def __init__(
        self, cfg: MoDEConfig, obs_dim: int, n_obs_steps: int, action_dim: int, horizon: int
    ) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg, self.horizon = cfg, horizon
        self.obs_proj = nn.Linear(obs_dim, d)
        self.obs_pos = nn.Parameter(torch.randn(1, n_obs_steps, d) * 0.02)
        if horizon % cfg.action_group:
            raise ValueError(f"mode.action_group ({cfg.action_group}) must divide the horizon ({horizon})")
        self.n_act_tokens = horizon // cfg.action_group
        self.action_dim = action_dim
        self.act_proj = nn.Linear(action_dim * cfg.action_group, d)
        self.act_pos = nn.Parameter(torch.randn(1, self.n_act_tokens, d) * 0.02)
        self.sigma_embedding = SigmaEmbedding(d)
        self.blocks = nn.ModuleList(MoDEBlock(cfg) for _ in range(cfg.n_layers))
        self.out_norm = nn.RMSNorm(d)
        self.out = nn.Linear(d, action_dim * cfg.action_group)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.balance_loss: Tensor = torch.zeros(())
        """Mean load-balancing loss of the last uncached forward pass."""

    @property
    def goal_width(self) -> int:
        """Width of the goal feature `encode` accepts (one goal token)."""
        return self.cfg.d_model

    def encode(self, obs: Tensor, goal: Tensor | None = None) -> Tensor:
        """Condition tokens (B, T_o [+1], d); once per chunk."""
        tokens = self.obs_proj(obs) + self.obs_pos
        return tokens if goal is None else torch.cat([tokens, goal.unsqueeze(1)], dim=1)

    def sigma_features(self, c_noise: Tensor) -> Tensor:
        """σ embeddings (N, d): the σ token and the routers' only input."""
        return self.sigma_embedding(c_noise)

    @torch.no_grad()
    def prepare(self, sigma_feat: Tensor) -> list[FusedExperts]:
        """Fused experts of every layer for one noise level (sigma_feat (1, d))."""
        fused = []
        for block in self.blocks:
            assert isinstance(block, MoDEBlock)
            idx, gates, _ = block.route(sigma_feat)
            fused.append(block.experts.fuse(idx[0], gates[0]))
        return fused

    def forward(
        self, x_in: Tensor, sigma_feat: Tensor, cond: Tensor, fused: list[FusedExperts] | None = None
    ) -> Tensor:
        b = x_in.shape[0]
        sigma_emb = sigma_feat.expand(b, -1)
        actions = self.act_proj(x_in.reshape(b, self.n_act_tokens, -1)) + self.act_pos
        x = torch.cat([sigma_emb.unsqueeze(1), cond.expand(b, -1, -1), actions], 1)
        balance = x.new_zeros(())
        for i, block in enumerate(self.blocks):
            x, layer_balance = block(x, sigma_emb, None if fused is None else fused[i])
            balance = balance + layer_balance
        self.balance_loss = balance / len(self.blocks)
        out = self.out(self.out_norm(x[:, -self.n_act_tokens :]))
        return out.reshape(b, self.horizon, self.action_dim)

    def parameter_counts(self) -> dict[str, int]:
        """Total parameters and parameters active per denoiser call (top_k of n_experts experts)."""
        total = sum(p.numel() for p in self.parameters())
        expert = sum(p.numel() for name, p in self.named_parameters() if ".experts." in name)
        active = total - expert + expert * self.cfg.top_k // self.cfg.n_experts
        return {"total": total, "active": active}
