"""Temporal convolutional U-Net denoiser (Diffusion Policy's CNN backbone, Chi et al. 2023, §3.2).

The noisy chunk is a 1-D signal over the chunk's T_p time steps with d_a channels. It goes down through
levels of two residual blocks (Conv1d → GroupNorm → Mish, twice, with FiLM in between), halving the time
axis between levels, through two middle blocks, and back up with skip connections. Every block is
FiLM-conditioned on [σ embedding, observation (+ goal) features]: since the FiLM input passes through an
elementwise Mish before its linear map, the map splits exactly into an observation part (computed once
per chunk in `encode`) and a σ part (once per noise level in `sigma_features`); a denoiser call only adds
the two. Chunk lengths that the down-sampling does not divide are zero-padded on the time axis (and
cropped after), so any horizon works.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from scorepolicy.models.embeddings import SigmaEmbedding


@dataclass
class UNet1DConfig:
    """Temporal conv U-Net denoiser (Diffusion Policy's ConditionalUnet1D, written from the paper)."""

    down_dims: tuple[int, ...] = (64, 128, 256)
    """Channels per level (Diffusion Policy: 256 512 1024); the time axis halves between levels."""
    kernel_size: int = 5
    """Temporal convolution kernel (odd; Diffusion Policy: 5)."""
    n_groups: int = 8
    """GroupNorm groups; must divide every width in down_dims."""
    cond_dim: int = 128
    """Width of the observation (+ goal) features that FiLM reads."""
    sigma_dim: int = 128
    """Width of the σ embedding that FiLM reads."""


EXTRA_ROWS = 8
"""Zero rows appended to every inference convolution's matrix product (so it never has fewer than 8)."""


class RowConv1d(nn.Conv1d):
    """Conv1d whose inference gives every batch row the same bits at any batch size.

    torch's CPU convolution picks its algorithm by batch size (batch 1 rounds differently from batch 64), so a
    rollout's actions would depend on how many envs share its batch. Outside training the same convolution
    runs as one matrix product over (row, time) pairs of unfolded windows, which is row-independent like the
    other denoisers' linear layers; training keeps torch's faster kernel (the two agree to float rounding).
    """

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return super().forward(x)
        k, stride, pad = self.kernel_size[0], self.stride[0], int(self.padding[0])
        if pad:
            x = F.pad(x, (pad, pad))
        cols = x.unfold(2, k, stride).transpose(1, 2)  # (B, T_out, C_in, k)
        t_out, width = cols.shape[1], cols.shape[2] * k  # fixed by the architecture, not the batch
        # BLAS rounds a product of only a row or two differently: always multiply EXTRA_ROWS zero rows more
        rows = F.pad(cols.reshape(-1, width), (0, 0, 0, EXTRA_ROWS))
        out = (rows @ self.weight.flatten(1).T)[:-EXTRA_ROWS].reshape(-1, t_out, self.out_channels)
        if self.bias is not None:
            out = out + self.bias
        return out.transpose(1, 2)


class RowConvTranspose1d(nn.ConvTranspose1d):
    """ConvTranspose1d with RowConv1d's inference: one matrix product per (row, time) pair, overlaps summed
    by `fold` (elementwise), so a row's bits do not depend on the batch."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.training or output_size is not None:
            return super().forward(x, output_size)
        k, stride, pad = self.kernel_size[0], self.stride[0], int(self.padding[0])
        t, c_out = x.shape[-1], self.out_channels
        rows = F.pad(x.transpose(1, 2).reshape(-1, self.in_channels), (0, 0, 0, EXTRA_ROWS))
        taps = (rows @ self.weight.flatten(1))[:-EXTRA_ROWS].reshape(-1, t, c_out * k).transpose(1, 2)
        full = (t - 1) * stride + k
        out = F.fold(taps, (1, full), (1, k), stride=(1, stride)).squeeze(2)[..., pad : full - pad]
        return out if self.bias is None else out + self.bias.unsqueeze(-1)


class ConvBlock(nn.Sequential):
    """Conv1d (same length) → GroupNorm → Mish."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int) -> None:
        super().__init__(
            RowConv1d(c_in, c_out, kernel, padding=kernel // 2), nn.GroupNorm(groups, c_out), nn.Mish()
        )


class ResBlock(nn.Module):
    """x → conv block → FiLM (scale, shift per channel) → conv block, plus a (1×1-projected) skip."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.width = c_out
        self.block1 = ConvBlock(c_in, c_out, kernel, groups)
        self.block2 = ConvBlock(c_out, c_out, kernel, groups)
        self.skip = RowConv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        h = torch.addcmul(shift.unsqueeze(-1), self.block1(x), scale.unsqueeze(-1))
        return self.block2(h) + self.skip(x)


class UNet1DDenoiser(nn.Module):
    """F(c_in·x, σ-features, cond) for action chunks x (B, T_p, d_a), convolving over the time axis."""

    film_offset: Tensor

    def __init__(
        self, cfg: UNet1DConfig, obs_dim: int, n_obs_steps: int, action_dim: int, horizon: int
    ) -> None:
        super().__init__()
        self.cfg, self.horizon, self.action_dim = cfg, horizon, action_dim
        dims, k, g = list(cfg.down_dims), cfg.kernel_size, cfg.n_groups
        self.multiple = 2 ** (len(dims) - 1)
        self.padded = -(-horizon // self.multiple) * self.multiple
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(zip([action_dim, *dims[:-1]], dims)):
            self.down.append(nn.ModuleList([ResBlock(c_in, c_out, k, g), ResBlock(c_out, c_out, k, g)]))
            last = i == len(dims) - 1
            self.downsample.append(nn.Identity() if last else RowConv1d(c_out, c_out, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([ResBlock(dims[-1], dims[-1], k, g) for _ in range(2)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for c_out, c_in in reversed(list(itertools.pairwise(dims))):
            self.up.append(nn.ModuleList([ResBlock(2 * c_in, c_out, k, g), ResBlock(c_out, c_out, k, g)]))
            self.upsample.append(RowConvTranspose1d(c_out, c_out, 4, stride=2, padding=1))
        self.final = ConvBlock(dims[0], dims[0], k, g)
        self.out = RowConv1d(dims[0], action_dim, 1)
        nn.init.zeros_(self.out.weight)
        if self.out.bias is not None:
            nn.init.zeros_(self.out.bias)
        widths = [b.width for b in self.res_blocks()]
        self.film_sizes = [2 * w for w in widths]
        n_film = sum(self.film_sizes)
        self.obs_encoder = nn.Sequential(
            nn.Linear(obs_dim * n_obs_steps, cfg.cond_dim), nn.Mish(), nn.Linear(cfg.cond_dim, cfg.cond_dim)
        )
        self.cond_proj = nn.Linear(cfg.cond_dim, n_film)
        self.sigma_embedding = SigmaEmbedding(cfg.sigma_dim)
        self.sigma_proj = nn.Linear(cfg.sigma_dim, n_film, bias=False)
        # FiLM scales are 1 + (learnt terms): the 1 is added once per chunk in `encode`
        offset = torch.cat([torch.cat([torch.ones(w), torch.zeros(w)]) for w in widths])
        self.register_buffer("film_offset", offset, persistent=False)

    def res_blocks(self) -> list[ResBlock]:
        """Every FiLM-conditioned block in call order (down levels, middle, up levels)."""
        levels = [*self.down, self.mid, *self.up]
        return [cast(ResBlock, b) for level in levels for b in level.children()]

    @property
    def goal_width(self) -> int:
        """Width of the goal feature `encode` accepts (added to the observation features)."""
        return self.cfg.cond_dim

    def encode(self, obs: Tensor, goal: Tensor | None = None) -> Tensor:
        """FiLM terms of the observation (+ goal) (B, n_film), from normalised observations (B, T_o, d_o);
        once per chunk."""
        rows = obs.flatten(1)
        if not self.training:  # as RowConv1d: a few zero rows more, so that no product has only one row
            rows = F.pad(rows, (0, 0, 0, EXTRA_ROWS))
            goal = None if goal is None else F.pad(goal, (0, 0, 0, EXTRA_ROWS))
        h = self.obs_encoder(rows)
        if goal is not None:
            h = h + goal
        out = self.cond_proj(F.mish(h)) + self.film_offset
        return out if self.training else out[:-EXTRA_ROWS]

    def sigma_features(self, c_noise: Tensor) -> Tensor:
        """FiLM terms of the noise level (N, n_film) for c_noise (N,); once per schedule when sampling."""
        return self.sigma_proj(F.mish(self.sigma_embedding(c_noise)))

    def forward(self, x_in: Tensor, sigma_feat: Tensor, cond: Tensor) -> Tensor:
        b = x_in.shape[0]
        film = iter((cond + sigma_feat).split(self.film_sizes, dim=1))
        h = x_in.transpose(1, 2)
        if self.padded != self.horizon:
            h = F.pad(h, (0, self.padded - self.horizon))
        skips = []
        for level, down in zip(self.down, self.downsample):
            for block in level.children():
                h = block(h, *next(film).chunk(2, dim=1))
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, *next(film).chunk(2, dim=1))
        for level, up in zip(self.up, self.upsample):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in level.children():
                h = block(h, *next(film).chunk(2, dim=1))
            h = up(h)
        out = self.out(self.final(h))[..., : self.horizon]
        return out.transpose(1, 2).reshape(b, self.horizon, self.action_dim)
