"""Typed configuration of the training loop."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Optimisation, EMA, logging and checkpointing."""

    steps: int = 30_000
    """Total gradient steps."""
    batch_size: int = 256
    """Windows per gradient step."""
    lr: float = 3e-4
    """Peak AdamW learning rate."""
    weight_decay: float = 1e-6
    """AdamW weight decay."""
    beta1: float = 0.9
    """AdamW β1."""
    beta2: float = 0.999
    """AdamW β2."""
    warmup_steps: int = 500
    """Linear warm-up steps before the cosine decay."""
    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of lr."""
    ema_decay: float = 0.999
    """EMA decay of the weights that are saved and evaluated (ramped up over the first steps)."""
    grad_clip: float = 1.0
    """Gradient-norm clipping threshold (0 disables)."""
    seed: int = 0
    """Seed for weights, data order and training noise."""
    checkpoint_every: int = 2_000
    """Write a checkpoint (and a snapshot) every N steps, and at the end."""
    keep_snapshots: int = 5
    """Snapshots of the EMA model kept under checkpoints/ (oldest removed first; 0 keeps none)."""
    log_every: int = 100
    """Write a metrics row (CSV and TensorBoard) every N steps."""
    val_every: int = 1_000
    """Validation loss every N steps (needs validation episodes)."""
    num_threads: int = 0
    """torch threads (0 = torch's default). Resuming bit-exactly needs the same value."""
    tensorboard: bool = True
    """Also log to TensorBoard (tb/ in the run directory)."""
    progress: bool = True
    """Show a progress bar."""
