"""Few-step students by consistency distillation (Song et al. 2023, Alg. 2; Consistency Policy, Prasad et
al. 2024) in EDM parameterisation.

The student f_θ(x, σ) = c_skip(σ)·x + c_out(σ)·F_θ(c_in·x, c_noise) uses the consistency scalings, so
f(x, σ_min) = x. It starts as a copy of the teacher and learns to map any point of a teacher ODE trajectory
to the trajectory's end: on the teacher's own NFE-`teacher_nfe` schedule (merged with the levels the
student samples at), a data chunk is noised to a level σ_{n}, one teacher ODE step (Euler, the step of the
DDIM sampler, or Heun) brings it to the next level σ_{n+1}, and f_θ(x_n, σ_n) is pulled towards the EMA
target f_θ⁻(x̂_{n+1}, σ_{n+1}); at the last step (σ_{n+1} = 0) the target is the teacher's step itself.
The fixed point is the teacher's NFE-`teacher_nfe` solution, which the student's 1-3 step DDIM sampler
then reproduces (a step of DDIM with a consistency function re-uses the implied noise, so sampling stays a
deterministic function of the initial noise).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from scorepolicy.data.windows import WindowDataset
from scorepolicy.diffusion import edm_denoise
from scorepolicy.errors import ScorePolicyError, check_field
from scorepolicy.files import atomic_directory, atomic_write_json
from scorepolicy.policies import ScorePolicy
from scorepolicy.training.config import TrainConfig
from scorepolicy.training.loop import ema_update, make_optimizer, to_torch


@dataclass
class DistillConfig:
    """Consistency distillation of a trained score policy into a 1-3 step student."""

    nfe: int = 1
    """Denoiser calls per chunk of the student (1-3); its config's default NFE."""
    teacher_nfe: int = 20
    """The teacher's schedule (its sampler's NFE): the student reproduces this solution."""
    solver: Literal["euler", "heun"] = "euler"
    """Teacher ODE step between levels: Euler (the step of its DDIM sampler) or Heun (2 teacher calls)."""
    steps: int = 4_000
    """Gradient steps of the student."""
    batch_size: int = 256
    """Windows per step."""
    lr: float = 1e-4
    """Peak AdamW learning rate (linear warm-up, then cosine decay to 0)."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    target_ema: float = 0.95
    """EMA decay of the target network f_θ⁻ (Song et al. 2023 for distillation: 0.95)."""
    ema_decay: float = 0.999
    """EMA decay of the saved (evaluated) weights, ramped up over the first steps as in training."""
    grad_clip: float = 1.0
    """Gradient-norm clipping (0 disables)."""
    seed: int = 0
    """Seed of the data order and the noise."""
    checkpoint_every: int = 1_000
    """Write the student (and a snapshot under checkpoints/) every N steps and at the end."""
    keep_snapshots: int = 5
    """Snapshots kept under checkpoints/ (for `scorepolicy select`)."""
    log_every: int = 100
    """Write a metrics.csv row every N steps."""
    num_threads: int = 1
    """torch threads."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "--") -> None:
        """One-line errors naming the flag of any value out of its range."""
        check_field(f"{prefix}nfe", self.nfe, at_least=1, at_most=3)
        check_field(f"{prefix}teacher-nfe", self.teacher_nfe, at_least=2)
        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "num_threads"):
            check_field(prefix + name.replace("_", "-"), getattr(self, name), at_least=1)
        for name in ("warmup_steps", "keep_snapshots", "grad_clip", "seed"):
            check_field(prefix + name.replace("_", "-"), getattr(self, name), at_least=0)
        check_field(f"{prefix}lr", self.lr, above=0)
        for name in ("target_ema", "ema_decay"):
            check_field(prefix + name.replace("_", "-"), getattr(self, name), at_least=0, below=1)


@dataclass
class DistillResult:
    """What a distillation run produced."""

    run_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    """Distillation loss of every step."""
    seconds: float = 0.0


def make_student(teacher: ScorePolicy, nfe: int) -> ScorePolicy:
    """A copy of the teacher with consistency scalings and a deterministic NFE-`nfe` DDIM sampler."""
    d = dataclasses.replace(teacher.cfg.diffusion, precond="consistency", sampler="ddim", nfe=nfe)
    student = ScorePolicy(dataclasses.replace(teacher.cfg, diffusion=d))
    student.load_state_dict(teacher.state_dict())
    return student


def distill_levels(teacher: ScorePolicy, student: ScorePolicy, teacher_nfe: int) -> Tensor:
    """The decreasing grid of noise levels, ending in 0: the teacher's NFE-`teacher_nfe` schedule with the
    student's own sampling levels added (so that every level the student samples at is trained)."""
    levels = {float(s) for s in teacher.sigmas(teacher_nfe)} | {float(s) for s in student.sigmas()}
    return torch.tensor(sorted(levels, reverse=True), dtype=torch.float32)


def denoise_rows(policy: ScorePolicy, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
    """D(x; σ) with one noise level per row (σ (B,) > 0), the policy's own scalings, differentiable."""

    def net(x_in: Tensor, c_noise: Tensor) -> Tensor:
        return policy.denoiser(x_in, policy.denoiser.sigma_features(c_noise), cond)

    return edm_denoise(net, x, sigma, policy.cfg.diffusion.sigma_data, policy.precond(sigma))


def _rows(v: Tensor) -> Tensor:
    return v.reshape(-1, 1, 1)


@torch.no_grad()
def teacher_step(
    teacher: ScorePolicy, x: Tensor, s_hi: Tensor, s_lo: Tensor, cond: Tensor, solver: str
) -> Tensor:
    """One probability-flow ODE step per row from σ = s_hi to s_lo (≥ 0): Euler, or Heun where s_lo > 0."""
    d = (x - denoise_rows(teacher, x, s_hi, cond)) / _rows(s_hi)
    x_euler = x + d * _rows(s_lo - s_hi)
    if solver == "euler":
        return x_euler
    safe = s_lo.clamp_min(teacher.cfg.diffusion.sigma_min)
    d_next = (x_euler - denoise_rows(teacher, x_euler, safe, cond)) / _rows(safe)
    x_heun = x + (d + d_next) / 2 * _rows(s_lo - s_hi)
    return torch.where(_rows(s_lo > 0), x_heun, x_euler)


def consistency_loss(
    student: ScorePolicy,
    target: ScorePolicy,
    teacher: ScorePolicy,
    batch: dict[str, Tensor],
    grid: Tensor,
    solver: str,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mean squared distance between f_θ(x_n, σ_n) and the target f_θ⁻(x̂_{n+1}, σ_{n+1}) over a batch of
    raw windows, with n uniform over the grid's steps; x̂_{n+1} = teacher ODE step from x_n."""
    x0 = teacher.normalize("action", batch["action"])
    obs = batch["obs"]
    n = torch.randint(0, len(grid) - 1, (x0.shape[0],), generator=generator)
    s_hi, s_lo = grid[n], grid[n + 1]
    x = x0 + _rows(s_hi) * torch.randn(x0.shape, generator=generator)
    with torch.no_grad():
        x_next = teacher_step(
            teacher, x, s_hi, s_lo, teacher.condition(teacher.normalize("obs", obs), None), solver
        )
        safe = s_lo.clamp_min(target.cfg.diffusion.sigma_min)
        t_cond = target.condition(target.normalize("obs", obs), None)
        goal = torch.where(_rows(s_lo > 0), denoise_rows(target, x_next, safe, t_cond), x_next)
    s_cond = student.condition(student.normalize("obs", obs), None)
    out = denoise_rows(student, x, s_hi, s_cond)
    return (out - goal).pow(2).flatten(1).mean(dim=1).mean()


def _lr_factor(step: int, cfg: DistillConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return 0.5 * (1 + math.cos(math.pi * progress))


def check_teacher(teacher: Any) -> None:
    """Only unconditional (no goal), state-only score policies can be distilled here."""
    if not isinstance(teacher, ScorePolicy):
        raise ScorePolicyError(
            f"distill: the teacher is a '{getattr(teacher, 'kind', type(teacher).__name__)}' policy; "
            "only score policies (kind 'score') can be distilled"
        )
    if teacher.cfg.goal.enabled:
        raise ScorePolicyError(
            "distill: goal-conditioned teachers are not supported yet; distil a policy without goals"
        )
    if teacher.cfg.image_shapes:
        raise ScorePolicyError("distill: teachers that take camera frames are not supported yet")


def distill(
    teacher: ScorePolicy,
    student: ScorePolicy,
    data: WindowDataset,
    cfg: DistillConfig,
    run_dir: str | Path,
    *,
    run_config: dict[str, Any] | None = None,
) -> DistillResult:
    """Train `student` (consistency scalings, e.g. from `make_student`) against the frozen `teacher` on the
    windows of `data`, writing an ordinary run directory (EMA weights, config, snapshots, metrics.csv)."""
    cfg.validate()
    check_teacher(teacher)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.num_threads)
    teacher.eval().requires_grad_(False)
    student.train()
    target = copy.deepcopy(student).requires_grad_(False).eval()
    ema = copy.deepcopy(student).requires_grad_(False).eval()
    grid = distill_levels(teacher, student, cfg.teacher_nfe)
    optimizer = make_optimizer(student, TrainConfig(lr=cfg.lr, weight_decay=0.0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg))
    rng, gen = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed + 1)
    if run_config is not None:
        atomic_write_json(run_dir / "train_config.json", run_config)
    result = DistillResult(run_dir, 0)
    bar = tqdm(total=cfg.steps, disable=not cfg.progress, desc="distill", unit="step")
    t0 = tick = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        batch = to_torch(data.batch(rng.integers(0, len(data), cfg.batch_size)))
        loss = consistency_loss(student, target, teacher, batch, grid, cfg.solver, gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip or float("inf"))
        optimizer.step()
        scheduler.step()
        ema_update(target, student, cfg.target_ema)
        ema_update(ema, student, min(cfg.ema_decay, (1 + step) / (10 + step)))
        result.losses.append(loss.item())
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            rate, tick = cfg.log_every / max(now - tick, 1e-9), now
            row = {"step": step, "loss": float(np.mean(result.losses[-cfg.log_every :]))}
            _log_row(run_dir, {**row, "lr": float(scheduler.get_last_lr()[0]), "steps_per_s": rate})
            bar.set_postfix(loss=f"{row['loss']:.5f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _save(ema, run_dir, step, cfg.keep_snapshots)
    bar.close()
    student.eval()
    result.steps, result.seconds = cfg.steps, time.perf_counter() - t0
    return result


def _log_row(run_dir: Path, row: dict[str, float]) -> None:
    path = run_dir / "metrics.csv"
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=("step", "loss", "lr", "steps_per_s"))
        if new:
            w.writeheader()
        w.writerow(row)


def _save(ema: ScorePolicy, run_dir: Path, step: int, keep: int) -> None:
    """The EMA student at the top of the run dir and as a snapshot (each snapshot written whole)."""
    ema.save_pretrained(run_dir)
    if keep == 0:
        return
    with atomic_directory(run_dir / "checkpoints" / f"step_{step:07d}") as tmp:
        ema.save_pretrained(tmp)
    for old in sorted((run_dir / "checkpoints").glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
