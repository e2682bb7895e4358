"""FIPER's two failure scores: observation novelty (random network distillation on the policy's own
observation embedding) and action-chunk entropy (the spread of B sampled chunks' executed positions).

Both are computed once per decision (each time the policy samples a new action chunk).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from scorepolicy.diffusion.random import RowGenerators
from scorepolicy.errors import ScorePolicyError
from scorepolicy.policies import ChunkPolicy
from scorepolicy.policies.base import frozen_trace
from scorepolicy.policies.score_policy import DETERMINISTIC_SAMPLERS, ScorePolicy

PositionMode = Literal["action", "cumsum"]
"""How executed positions come from actions: the actions are positions (Push-T's target position), or
velocities whose running sum is the position relative to the decision's start (the obstacle task)."""


# ----------------------------------------------------------------------------------------------------------
# Random network distillation


@dataclass(frozen=True)
class RNDConfig:
    """Sizes and training of the observation-novelty networks."""

    width: int = 128
    """Hidden width of the target and the predictor (128: 0.33 ms per score at batch 1 on one thread for
    Push-T's 2304-d embedding, 256: 1.45 ms, CPU time measured here)."""
    out_dim: int = 64
    """Output size of both networks."""
    target_layers: int = 3
    """Linear layers of the frozen random target."""
    predictor_layers: int = 5
    """Linear layers of the trained predictor (deeper than the target, as in FIPER)."""
    steps: int = 800
    """Adam steps fitting the predictor."""
    batch_size: int = 128
    """Embeddings per step."""
    lr: float = 1e-3
    """Adam learning rate."""
    seed: int = 0
    """Seed of the target's random weights, the predictor's initialisation and the batch order."""


def _mlp(d_in: int, width: int, d_out: int, layers: int, generator: torch.Generator) -> nn.Sequential:
    """Linear-LeakyReLU stack with orthogonal weights (gain √2) drawn from `generator`."""
    sizes = [d_in] + [width] * (layers - 1) + [d_out]
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            w = torch.randn(b, a, generator=generator)
            q, r = torch.linalg.qr(w.T if a > b else w)
            q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
            lin.weight.copy_(math.sqrt(2.0) * (q.T if a > b else q))
            lin.bias.zero_()
        mods.append(lin)
        if i < len(sizes) - 2:
            mods.append(nn.LeakyReLU())
    return nn.Sequential(*mods)


class RND(nn.Module):
    """A frozen random target g and a trained predictor f on standardised embeddings; the score of an
    embedding z is the mean squared error ‖f(ẑ) − g(ẑ)‖² / out_dim (FIPER's RND-OE)."""

    mean: Tensor
    std: Tensor

    def __init__(self, in_dim: int, cfg: RNDConfig) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(cfg.seed)
        self.target = _mlp(in_dim, cfg.width, cfg.out_dim, cfg.target_layers, gen).requires_grad_(False)
        self.predictor = _mlp(in_dim, cfg.width, cfg.out_dim, cfg.predictor_layers, gen)
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))

    def forward(self, z: Tensor) -> Tensor:
        """Novelty score (N,) of embeddings (N, in_dim)."""
        x = (z - self.mean) / self.std
        return (self.predictor(x) - self.target(x)).pow(2).mean(dim=-1)

    def fit(self, z: Tensor, cfg: RNDConfig) -> list[float]:
        """Standardise on `z` (N, in_dim) and train the predictor on it; the loss every 100 steps."""
        if z.shape[0] < 2:
            raise ScorePolicyError(
                "guard calibration: RND needs at least 2 embeddings to fit; roll out more episodes"
            )
        with torch.no_grad():
            self.mean.copy_(z.mean(0))
            self.std.copy_(z.std(0).clamp_min(1e-3 * float(z.std(0).max().clamp_min(1e-6))))
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        opt = torch.optim.Adam(self.predictor.parameters(), lr=cfg.lr)
        losses: list[float] = []
        with torch.inference_mode(False), torch.enable_grad():
            z = z.clone()
            for step in range(cfg.steps):
                idx = torch.randint(0, z.shape[0], (min(cfg.batch_size, z.shape[0]),), generator=gen)
                loss = self(z[idx]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                if step % 100 == 0 or step == cfg.steps - 1:
                    losses.append(float(loss.detach()))
        self.eval()
        return losses


class _NoveltyNet(nn.Module):
    """(policy's embedding, its RND score) of raw observation histories as one module, to trace into one
    graph."""

    def __init__(self, policy: ChunkPolicy, rnd: RND) -> None:
        super().__init__()
        self.policy, self.rnd = policy, rnd

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        z = self.policy.condition(self.policy.normalize("obs", obs), None)
        return z, self.rnd(z)


class Novelty:
    """The RND score of observation histories under a policy, one row at a time (a matrix product's bits
    depend on the batch size, a row's score must not); a frozen TorchScript graph at batch 1 where the
    policy takes no goal (per-op dispatch is most of the time), else eager."""

    def __init__(self, policy: ChunkPolicy, rnd: RND) -> None:
        self.policy, self.rnd = policy, rnd
        self.graph: torch.jit.ScriptModule | None = None
        if not policy.cfg.goal.enabled:
            example = torch.zeros(1, policy.cfg.n_obs_steps, policy.cfg.obs_dim)
            self.graph = frozen_trace(
                _NoveltyNet(policy, rnd), (example,), "guard novelty graph", "eager RND"
            )

    def __call__(self, histories: Tensor) -> Tensor:
        """RND score (N,) float64 of raw observation histories (N, T_o, d_o)."""
        return self.scored(histories)[1]

    def scored(self, histories: Tensor) -> tuple[Tensor, Tensor]:
        """The policy's observation embeddings (N, F) of raw histories (N, T_o, d_o), each computed at
        batch 1 (for goal-free policies: the condition its sampler uses), and their RND scores (N,) float64."""
        with torch.inference_mode():
            if self.graph is not None:
                rows = [self.graph(histories[i : i + 1].float()) for i in range(histories.shape[0])]
            else:
                z = [self.policy.observation_embedding(histories[i : i + 1]) for i in range(len(histories))]
                rows = [(e, self.rnd(e)) for e in z]
            if len(rows) == 1:
                return rows[0][0], rows[0][1].double()
            return torch.cat([e for e, _ in rows]), torch.cat([r for _, r in rows]).double()


# ----------------------------------------------------------------------------------------------------------
# Action-chunk entropy


def executed_positions(chunks: Tensor, n_executed: int, mode: PositionMode) -> Tensor:
    """Positions (..., K, D) of the executed part (first K = n_executed actions) of chunks (..., H, D)."""
    part = chunks[..., :n_executed, :]
    return part if mode == "action" else part.cumsum(dim=-2)


def chunk_entropy(positions: Tensor, cell: Tensor) -> Tensor:
    """FIPER's action-chunk entropy: for samples (N, B, K, D), bin the B positions of each prediction index
    k on a grid of cells `cell` (D,) starting at the samples' minimum, take the Shannon entropy (bits) of
    the cell counts, and average over k. Returns (N,) float64; 0 when all B samples share a cell, log2 B at most."""
    b = positions.shape[1]
    lo = positions.min(dim=1, keepdim=True).values
    cells = torch.floor((positions - lo) / cell).to(torch.int64)  # (N, B, K, D)
    same = (cells.unsqueeze(2) == cells.unsqueeze(1)).all(dim=-1)  # (N, B, B, K)
    counts = same.sum(dim=2).to(torch.float64)  # (N, B, K): size of each sample's cell
    entropy = -(torch.log2(counts / b)).sum(dim=1) / b  # -Σ_cells p log2 p = -(1/B) Σ_i log2(count_i / B)
    return entropy.sum(dim=-1) / entropy.shape[-1]  # float64 sums of few terms: the same bits in any batch


def cell_size(positions: Tensor, fraction: float) -> Tensor:
    """Grid cell (D,) = `fraction` × the per-axis range of calibration positions (..., D); an axis without
    range takes the largest range (FIPER's rule)."""
    flat = positions.reshape(-1, positions.shape[-1])
    span = flat.max(dim=0).values - flat.min(dim=0).values
    top = float(span.max())
    if top <= 0:
        raise ScorePolicyError(
            "guard calibration: the sampled actions never vary; the entropy score is undefined"
        )
    return torch.where(span > 0, span, torch.full_like(span, top)) * fraction


# ----------------------------------------------------------------------------------------------------------
# B chunks per decision in one batched sampler call


def monitor_seeds(episode_seeds: Sequence[int], n_samples: int) -> list[int]:
    """Seeds of the B monitor noise streams of each episode (row-major: episode i, sample b), derived from
    the episode's seed and kept apart from the policy's own stream (which the episode seed itself seeds)."""
    out: list[int] = []
    for s in episode_seeds:
        state = np.random.SeedSequence([int(s) % (1 << 63), 0x6775617264]).generate_state(
            n_samples, np.uint64
        )
        out.extend(int(v) & ((1 << 63) - 1) for v in state)
    return out


def check_guardable(policy: ChunkPolicy) -> None:
    """One-line error unless the policy is a score policy whose goal, if any, rides in the observation."""
    if policy.cfg.kind != "score":
        raise ScorePolicyError(
            f"guard: a '{policy.cfg.kind}' policy cannot be guarded; the monitor needs a score policy run"
        )
    g = policy.cfg.goal
    if g.enabled and not g.from_observation and g.guidance != 0:
        raise ScorePolicyError(
            "guard: this policy takes explicit goals; guard policies whose goal is in the observation "
            "(goal.from_observation) or run them goal-free (guidance 0)"
        )


def sample_chunks(
    policy: ChunkPolicy,
    history: Tensor,
    samples: RowGenerators,
    n_samples: int,
    *,
    own: bool = True,
    cond: Tensor | None = None,
) -> tuple[Tensor | None, Tensor]:
    """The policy's own chunks (n, H, A), drawn from its own noise streams exactly as `predict_action_chunk`
    would draw them, and B = n_samples monitor chunks per row (n, B, H, A) from `samples` (n·B rows,
    row-major), all in ONE batched sampler call. With `own=False` only the monitor chunks (first item None).

    `cond` (n, F), a goal-free score policy's condition terms of each history (`observation_embedding`,
    e.g. from `Novelty.scored`), spares the encoding of the n·(1+B) rows: each reuses its history's row.
    """
    n, cfg = history.shape[0], policy.cfg
    if len(samples) != n * n_samples:
        raise ValueError(f"monitor noise has {len(samples)} rows, expected {n} × {n_samples}")
    if cond is not None and not isinstance(policy, ScorePolicy):
        raise ValueError("sample_chunks: cond needs a ScorePolicy")
    shape = (cfg.horizon, cfg.action_dim)
    source = policy.noise_source
    mine: Tensor | None = None
    if own and cfg.diffusion.sampler not in DETERMINISTIC_SAMPLERS and not isinstance(source, RowGenerators):
        mine = policy.predict_action_chunk(history)  # one stream for the batch: it cannot be shared by rows
        own = False
    inputs = history if cond is None else cond  # what each row is sampled from
    rows_in = inputs.repeat_interleave(n_samples, dim=0)
    noise = samples.randn((n * n_samples, *shape))
    rows = samples
    if own:
        rows_in, noise = torch.cat([inputs, rows_in]), torch.cat([policy.initial_noise(n), noise])
        rows = RowGenerators.concat([source, samples]) if isinstance(source, RowGenerators) else samples
    with policy.noise_from(rows):
        if isinstance(policy, ScorePolicy) and cond is not None:
            out = policy.predict_from_condition(rows_in, noise)
        else:
            out = policy.predict_action_chunk(rows_in, noise=noise)  # type: ignore[call-arg]
    if own:
        mine, out = out[:n], out[n:]
    return mine, out.reshape(n, n_samples, *shape)
