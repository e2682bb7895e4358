"""Typed configuration of the training loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scorepolicy.errors import ScorePolicyError, check_field

EmaSchedule = Literal["constant", "power"]


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
    """EMA decay of the weights that are saved and evaluated: the most the schedule reaches (Diffusion
    Policy's power schedule: 0.9999)."""
    ema_schedule: EmaSchedule = "constant"
    """How the EMA decay grows with the step n: 'constant' = min(ema_decay, (1 + n) / (10 + n)), at ema_decay
    from a few hundred steps on; 'power' = Diffusion Policy's warm-up 1 − (1 + e / ema_inv_gamma)^(−ema_power),
    e = max(0, n − 2), clipped to [ema_min_decay, ema_decay] (0.999 near 10 k steps, 0.9999 near 215 k)."""
    ema_power: float = 0.75
    """'power' schedule: the exponent of its warm-up (DP: 0.75; 2/3 warms up more slowly)."""
    ema_inv_gamma: float = 1.0
    """'power' schedule: the step scale of its warm-up (DP: 1)."""
    ema_min_decay: float = 0.0
    """'power' schedule: the least decay once it has started (DP: 0)."""
    grad_clip: float = 1.0
    """Gradient-norm clipping threshold (0 disables)."""
    seed: int = 0
    """Seed for weights, data order and training noise."""
    checkpoint_every: int = 2_000
    """Write a checkpoint (and a snapshot) every N steps, and at the end (and on Ctrl-C / SIGTERM)."""
    keep_snapshots: int = 5
    """Snapshots of the EMA model kept under checkpoints/ (oldest removed first; 0 keeps none)."""
    log_every: int = 100
    """Write a metrics row (CSV and TensorBoard) every N steps."""
    val_every: int = 1_000
    """Validation loss every N steps (needs validation episodes)."""
    num_threads: int = 1
    """torch threads (0 = torch's default, one per core). One is the safe choice on a busy machine: on the
    2-core VM at load 13-15, the default MLP trained at 4.4-5.5 steps/s with one thread and 0.53-0.60 with two."""
    tensorboard: bool = True
    """Also log to TensorBoard (tb/ in the run directory)."""
    progress: bool = True
    """Show a progress bar."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: auto = CUDA when torch sees a device, else the CPU (`--device`)."""
    ranks: int = 1
    """Data-parallel processes (`--ranks`): each takes batch_size / ranks windows of every global batch and
    gradients are averaged (DDP; gloo on CPU, NCCL on CUDA), so results match one process at the same
    batch. N > 1 launches them on this machine with torchrun's environment; under torchrun the world size
    comes from torchrun. Each rank uses num_threads torch threads."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "--train.") -> None:
        """One-line errors naming the flag of any value out of its range."""
        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "val_every", "ranks"):
            check_field(_flag(prefix, name), getattr(self, name), at_least=1)
        for name in ("warmup_steps", "keep_snapshots", "num_threads", "seed", "weight_decay", "grad_clip"):
            check_field(_flag(prefix, name), getattr(self, name), at_least=0)
        check_field(_flag(prefix, "lr"), self.lr, above=0)
        for name in ("beta1", "beta2", "ema_decay"):
            check_field(_flag(prefix, name), getattr(self, name), at_least=0, below=1)
        check_field(_flag(prefix, "min_lr_ratio"), self.min_lr_ratio, at_least=0, at_most=1)
        if self.ema_schedule not in ("constant", "power"):
            raise ScorePolicyError(
                f"{_flag(prefix, 'ema_schedule')}: must be 'constant' or 'power', got {self.ema_schedule!r}"
            )
        check_field(_flag(prefix, "ema_power"), self.ema_power, above=0)
        check_field(_flag(prefix, "ema_inv_gamma"), self.ema_inv_gamma, above=0)
        check_field(_flag(prefix, "ema_min_decay"), self.ema_min_decay, at_least=0, at_most=self.ema_decay)
        if self.batch_size % self.ranks:
            raise ScorePolicyError(
                f"{_flag(prefix, 'batch_size')}: the global batch ({self.batch_size}) is split evenly over "
                f"--ranks {self.ranks}; choose a multiple of {self.ranks}"
            )


def _flag(prefix: str, name: str) -> str:
    """The command-line spelling of a field (`--train.batch-size`)."""
    return prefix + name.replace("_", "-")
