"""Settings of DSRL (noise-space RL on a frozen diffusion policy); no stable-baselines3 import here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class DSRLConfig:
    """DSRL: an agent whose action is the initial noise w of one action chunk (Wagenmaker et al. 2025)."""

    variant: Literal["na", "sac"] = "na"
    """'na': noise aliasing (action critic Q^A on executed chunks, noise critic Q^W distilled from it);
    'sac': plain stable-baselines3 SAC in noise space."""
    noise_bound: float = 1.5
    """b: the noise is b·tanh(u), inside ±b."""
    hidden: int = 256
    """Width of the actor and critic MLPs."""
    layers: int = 3
    """Hidden layers of the actor and critic MLPs."""
    lr: float = 3e-4
    """Learning rate of every network (and of the entropy temperature)."""
    actor_lr: float | None = 1e-6
    """Learning rate of the actor (None: lr). Push-T (10-min runs, 50 validation episodes): with 3e-5 or
    3e-4 every variant fell below the base within 25k env steps; with 1e-6 (ResFiT's actor rate) DSRL-NA
    rose from 34% / 0.841 to 38-56% / 0.87-0.89 mean score over 100k-190k env steps."""
    critic_warmup: int = 500
    """'na': gradient steps that train the critics only before the actor and α first move."""
    batch_size: int = 128
    """Replay batch per gradient step."""
    buffer_size: int = 200_000
    """Replay buffer capacity in chunk transitions."""
    gamma: float = 0.99
    """Discount per chunk (one RL step = one chunk of executed actions)."""
    tau: float = 0.005
    """Polyak rate of the target critic."""
    utd: float = 0.25
    """Gradient steps per collected chunk transition (update-to-data ratio)."""
    learning_starts: int = 512
    """Chunk transitions collected (with the initial actor, ≈ the base's own noise) before updates."""
    target_entropy: float = 0.0
    """Entropy target of the learned temperature α (DSRL: 0, not SB3's −dim)."""
    init_ent_coef: float = 1.0
    """Initial entropy temperature α."""
    distill_steps: int = 1
    """'na': noise-critic distillation steps per gradient step (fresh w ~ N(0, I))."""
    eval_noise: Literal["sample", "mean"] = "sample"
    """Noise of the improved policy when acting: 'sample' draws w from the actor with the policy's seeded
    generator (the initial actor then acts like the base), 'mean' uses b·tanh(μ)."""
