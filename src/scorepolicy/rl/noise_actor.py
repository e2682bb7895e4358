"""A deterministic noise actor distilled from best-of-K's critic: one base decode per decision.

Best-of-K decodes K chunks per decision and keeps the one its critic Q(s, executed actions, t) ranks
highest. The actor μ(s, t) = b·tanh(f(s, t)) instead proposes one initial noise and is trained, with the
base and the critic frozen, to maximise the critic through the base's deterministic sampler,

    L(μ) = E_s[ −Q̄(s, D(s, μ(s, t)), t) + (λ/2)·mean(μ(s, t)²) ],

where D is the base's K-step chunk decoder (differentiable: a fixed ODE solver run) and the second term
keeps the noise where the base's prior puts it (the critic has only seen decodes of N(0, I) draws). This
is DSRL's noise-space actor with the critic of best-of-K's policy iteration, so acting costs the base's
single chunk plus a small MLP. Its last layer starts at zero: the untrained actor decodes the zero noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from scorepolicy.policies import ScorePolicy


class NoiseActor(nn.Module):
    """MLP (state features + time feature) → bounded initial noise (B, H, d_a) = bound·tanh(·)."""

    def __init__(self, in_dim: int, shape: tuple[int, int], hidden: int, layers: int, bound: float) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        for i in range(layers):
            mods += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.LayerNorm(hidden), nn.ReLU()]
        last = nn.Linear(hidden, shape[0] * shape[1])
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*mods, last)
        self.shape, self.bound = shape, bound

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_dim) → noise (B, H, d_a) in (−bound, bound)."""
        return (self.bound * torch.tanh(self.net(x))).reshape(-1, *self.shape)


def decoder_copy(policy: ScorePolicy) -> ScorePolicy:
    """A plain, unfrozen copy of the policy's base whose chunk decode can be differentiated w.r.t. the noise."""
    base = ScorePolicy(policy.cfg)
    base.load_state_dict(policy.state_dict(), strict=False)
    base.eval()
    for p in base.parameters():
        p.requires_grad_(False)
    return base


def histories_from_features(policy: ScorePolicy, feats: Tensor) -> Tensor:
    """Raw observation histories (B, T_o, d_o) from the improved policy's flat features (its `features`
    inverted: normalised state history, then the last step's raw goal entries repeated over T_o)."""
    cfg = policy.cfg
    width, state_dim = cfg.goal.obs_width, cfg.obs_dim - cfg.goal.obs_width
    n = cfg.n_obs_steps * state_dim
    state = policy.unnormalize("obs", feats[:, :n].reshape(-1, cfg.n_obs_steps, state_dim))
    if not width:
        return state
    goal = feats[:, n:][:, None].expand(-1, cfg.n_obs_steps, -1)
    return torch.cat([state, goal], dim=2)


def fit_noise_actor(
    actor: NoiseActor,
    policy: Any,
    inputs: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    prior: float,
    seed: int,
) -> dict[str, float]:
    """Train `actor` on the states of the critic's inputs (rows of `policy.critic_input`) to maximise the
    frozen critic of `policy` (a fitted BestOfKPolicy) through the frozen base's decoder (module doc)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(inputs, dtype=torch.float32)
    n_exec = policy.cfg.n_action_steps * policy.cfg.action_dim
    feats = x[:, : x.shape[1] - n_exec - int(policy.bok.time_feature)]
    t = x[:, -1] * policy.max_steps if policy.bok.time_feature else torch.zeros(len(x))
    decoder = decoder_copy(policy)
    critic = policy.critic
    critic.requires_grad_(False)
    opt = torch.optim.Adam(actor.parameters(), lr=lr)
    q_mean = torch.zeros(())
    for _ in range(steps):
        idx = torch.randint(len(x), (batch_size,), generator=gen)
        f, ti = feats[idx], t[idx]
        w = actor(actor_input(policy, f, ti))
        chunk = decoder._sample_chunk(histories_from_features(policy, f), w, None, None, None)
        q = policy.critic(policy.critic_input(f, policy.normalize("action", chunk), ti)).mean(dim=1)
        loss = -q.mean() + 0.5 * prior * (w**2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        q_mean = q.mean().detach()
    critic.requires_grad_(True)
    with torch.no_grad():
        w = actor(actor_input(policy, feats[:4096], t[:4096]))
    return {"actor_steps": steps, "actor_q": float(q_mean), "actor_noise_rms": float(w.pow(2).mean().sqrt())}


def actor_input(policy: Any, feats: Tensor, t: Tensor) -> Tensor:
    """The actor's input: the state features and, with the critic's time feature, t / max_steps."""
    if not policy.bok.time_feature:
        return feats
    return torch.cat([feats, (t.float() / policy.max_steps)[:, None]], dim=1)
