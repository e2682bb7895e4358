"""The EMA decay schedules: the generic ramp ('constant') and Diffusion Policy's power warm-up ('power').

Both depend only on the update's index n (the step just finished, 1, 2, ...), so a resumed run, which
restores the step, continues with exactly the decays of an uninterrupted one.
"""

from __future__ import annotations

from scorepolicy.training.config import TrainConfig

DP_EMA_SKIPPED_UPDATES = 2
"""Diffusion Policy's EMAModel (update_after_step 0) copies the weights on its first two updates (decay 0)
and warms up from the third; the power schedule counts its warm-up step the same way."""


def constant_ema_decay(n: int, max_decay: float) -> float:
    """The generic schedule: (1 + n) / (10 + n) ramped up to `max_decay` (0.1 at n = 0, 0.5 at n = 8)."""
    return min(max_decay, (1 + n) / (10 + n))


def power_ema_decay(
    n: int, *, power: float = 0.75, inv_gamma: float = 1.0, min_decay: float = 0.0, max_decay: float = 0.9999
) -> float:
    """Diffusion Policy's (and diffusers') EMA warm-up for the n-th update (n ≥ 1): with e = max(0, n − 2),
    1 − (1 + e / inv_gamma)^(−power) clipped to [min_decay, max_decay], and 0 (a copy) while e = 0.

    With power 0.75 and inv_gamma 1 it reaches 0.999 after about 10 k updates and 0.9999 after 215 k.
    """
    e = max(0, n - DP_EMA_SKIPPED_UPDATES)
    if e == 0:
        return 0.0
    value = 1.0 - (1.0 + e / inv_gamma) ** (-power)
    return max(min_decay, min(value, max_decay))


def ema_decay(n: int, cfg: TrainConfig) -> float:
    """The EMA decay of the n-th update (n = the step just finished) under `cfg.ema_schedule`."""
    if cfg.ema_schedule == "power":
        return power_ema_decay(
            n,
            power=cfg.ema_power,
            inv_gamma=cfg.ema_inv_gamma,
            min_decay=cfg.ema_min_decay,
            max_decay=cfg.ema_decay,
        )
    return constant_ema_decay(n, cfg.ema_decay)
