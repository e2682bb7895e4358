"""The training loop: AdamW, warm-up + cosine, EMA, clipping, logs, atomic checkpoints, exact resume."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import math
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from scorepolicy.data.windows import WindowDataset
from scorepolicy.files import atomic_directory, atomic_write_bytes, atomic_write_json, to_dict
from scorepolicy.policies import ChunkPolicy
from scorepolicy.training.checkpoint import STATE_FILE, TrainState, load_train_state, save_train_state
from scorepolicy.training.config import TrainConfig
from scorepolicy.training.ema import ema_decay


@dataclass
class TrainResult:
    """What a finished (or resumed-and-finished) run produced."""

    run_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    """Training loss of every step run in this call."""
    val_losses: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine decay to min_lr_ratio at cfg.steps."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema ← decay·ema + (1 − decay)·model for parameters, matched by name (as k-diffusion's ema_update);
    buffers (normaliser) are copied. Models whose parameter or buffer names differ are an error."""
    params, ema_params = dict(model.named_parameters()), dict(ema.named_parameters())
    buffers, ema_buffers = dict(model.named_buffers()), dict(ema.named_buffers())
    if params.keys() != ema_params.keys() or buffers.keys() != ema_buffers.keys():
        raise ValueError("ema_update: the EMA model's parameter or buffer names differ from the model's")
    names = list(params)
    torch._foreach_lerp_([ema_params[n] for n in names], [params[n] for n in names], 1.0 - decay)
    for name, buffer in buffers.items():
        ema_buffers[name].copy_(buffer)


def to_torch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Numpy batch → torch tensors (no copy)."""
    return {k: torch.from_numpy(v) for k, v in batch.items()}


def make_optimizer(policy: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW, fused into one kernel per step where this torch has it (about 15% faster steps on a CPU)."""
    kwargs: dict[str, Any] = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    try:
        return torch.optim.AdamW(policy.parameters(), fused=True, **kwargs)
    except (RuntimeError, TypeError):  # no fused CPU kernel in this torch
        return torch.optim.AdamW(policy.parameters(), **kwargs)


def make_state(policy: ChunkPolicy, cfg: TrainConfig) -> TrainState:
    """Fresh optimiser, EMA copy and RNGs for `policy`."""
    optimizer = make_optimizer(policy, cfg)
    return TrainState(
        step=0,
        model=policy,
        ema=copy.deepcopy(policy).requires_grad_(False).eval(),  # validation sees no augmentation
        optimizer=optimizer,
        data_rng=np.random.default_rng(cfg.seed),
        noise_gen=torch.Generator().manual_seed(cfg.seed + 1),
    )


@torch.no_grad()
def validation_loss(policy: ChunkPolicy, data: WindowDataset, n_windows: int = 2048, seed: int = 0) -> float:
    """Mean EDM loss over a fixed subset of windows with fixed noise (comparable across steps and runs)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(data), size=min(n_windows, len(data)), replace=False)
    gen = torch.Generator().manual_seed(seed)
    losses = [
        policy.compute_loss(to_torch(data.batch(chunk)), generator=gen)[0].item() * len(chunk)
        for chunk in np.array_split(idx, max(1, len(idx) // 512))
    ]
    return float(sum(losses) / len(idx))


def save_checkpoint(run_dir: Path, state: TrainState, cfg: TrainConfig, *, snapshot: bool = True) -> None:
    """EMA model + config at the top of the run dir, a snapshot, and the resumable state (all atomic).

    A snapshot under checkpoints/ appears whole (weights and config built in a temporary directory, then
    renamed), so a reader never sees half of one.
    """
    ema: Any = state.ema
    ema.save_pretrained(run_dir)
    if snapshot and cfg.keep_snapshots > 0:
        with atomic_directory(run_dir / "checkpoints" / f"step_{state.step:07d}") as tmp:
            ema.save_pretrained(tmp)
        snapshots = sorted((run_dir / "checkpoints").glob("step_*"))
        for old in snapshots[: -cfg.keep_snapshots]:
            shutil.rmtree(old, ignore_errors=True)
    save_train_state(run_dir / STATE_FILE, state)


class MetricsLog:
    """metrics.csv (appended, header once) and optionally TensorBoard.

    With `resume_step` (a resumed run), rows after that step, written by the interrupted run after its
    last checkpoint, are cut from metrics.csv and TensorBoard purges its events from that step on, so
    every step is logged once.
    """

    FIELDS = ("step", "loss", "grad_norm", "lr", "steps_per_s", "val_loss")

    def __init__(self, run_dir: Path, tensorboard: bool, resume_step: int | None = None) -> None:
        self.path = run_dir / "metrics.csv"
        self.writer: Any = None
        if resume_step is not None:
            truncate_metrics(self.path, resume_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=purge)

    def write(self, row: dict[str, float]) -> None:
        """Append one row (and its scalars to TensorBoard)."""
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in self.FIELDS})
        if self.writer is not None:
            for k, v in row.items():
                if k != "step":
                    self.writer.add_scalar(f"train/{k}", v, int(row["step"]))

    def close(self) -> None:
        """Flush and close TensorBoard's writer."""
        if self.writer is not None:
            self.writer.close()


def truncate_metrics(path: Path, step: int) -> None:
    """Rewrite metrics.csv (atomically) without the rows logged after `step`."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = [row for row in csv.DictReader(f) if row.get("step") and int(row["step"]) <= step]
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=MetricsLog.FIELDS, extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, out.getvalue().encode())


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM after writing a checkpoint at the current step."""


@contextlib.contextmanager
def checkpoint_on_signals() -> Iterator[list[int]]:
    """While active, SIGINT and SIGTERM only record themselves (in the yielded list) so that the loop can
    finish its step and write a checkpoint; the previous handlers come back afterwards. Outside the main
    thread (where Python cannot install handlers) nothing changes."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def record(signum: int, frame: object) -> None:
        received.append(signum)

    for sig in previous:
        signal.signal(sig, record)
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def train(
    policy: ChunkPolicy,
    data: WindowDataset,
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    val_data: WindowDataset | None = None,
    resume: bool = False,
    run_config: dict[str, Any] | None = None,
) -> TrainResult:
    """Train `policy` on `data` for cfg.steps gradient steps, writing everything into `run_dir`.

    SIGINT (Ctrl-C) and SIGTERM finish the current step, write a checkpoint and raise TrainingInterrupted;
    `resume=True` continues from the last checkpoint bit-exactly.
    """
    cfg.validate()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    policy.train()  # also drops any frozen inference copy before the EMA copy is made
    state = make_state(policy, cfg)
    if resume:
        load_train_state(run_dir / STATE_FILE, state)
    atomic_write_json(run_dir / "train_config.json", {"train": to_dict(cfg), **(run_config or {})})
    log = MetricsLog(run_dir, cfg.tensorboard, state.step if resume else None)
    try:
        with checkpoint_on_signals() as signals:
            return _run_steps(policy, data, cfg, run_dir, state, log, val_data, signals)
    finally:
        log.close()
        policy.eval()


def _run_steps(
    policy: ChunkPolicy,
    data: WindowDataset,
    cfg: TrainConfig,
    run_dir: Path,
    state: TrainState,
    log: MetricsLog,
    val_data: WindowDataset | None,
    signals: list[int],
) -> TrainResult:
    """The steps from state.step to cfg.steps, with logs, validation and checkpoints."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        state.optimizer, lambda s: lr_factor(s, cfg), state.step - 1
    )
    result = TrainResult(run_dir, state.step)
    bar = tqdm(total=cfg.steps, initial=state.step, disable=not cfg.progress, desc="train", unit="step")
    t0 = tick = time.perf_counter()
    while state.step < cfg.steps:
        batch = to_torch(data.batch(state.data_rng.integers(0, len(data), cfg.batch_size)))
        loss, _ = policy.compute_loss(batch, generator=state.noise_gen)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip or float("inf"))
        state.optimizer.step()
        scheduler.step()
        state.step += 1
        ema_update(state.ema, policy, ema_decay(state.step, cfg))
        result.losses.append(loss.item())
        bar.update(1)
        row: dict[str, float] = {}
        if state.step % cfg.log_every == 0 or state.step == cfg.steps:
            now = time.perf_counter()
            rate, tick = cfg.log_every / max(now - tick, 1e-9), now
            row = {"step": state.step, "loss": float(np.mean(result.losses[-cfg.log_every :]))}
            row.update(grad_norm=float(grad_norm), lr=float(scheduler.get_last_lr()[0]), steps_per_s=rate)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
        if val_data is not None and (state.step % cfg.val_every == 0 or state.step == cfg.steps):
            row = row or {"step": state.step}
            row["val_loss"] = result.val_losses[state.step] = validation_loss(state.ema, val_data)  # type: ignore[arg-type]
        if row:
            log.write(row)
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
            save_checkpoint(run_dir, state, cfg)
        elif signals:
            save_checkpoint(run_dir, state, cfg, snapshot=False)
        if signals and state.step < cfg.steps:
            bar.close()
            name = signal.Signals(signals[0]).name
            raise TrainingInterrupted(
                f"{name} at step {state.step}: checkpoint written to {run_dir}; continue with "
                f"scorepolicy train --out {run_dir} --resume"
            )
    bar.close()
    result.steps, result.seconds = state.step, time.perf_counter() - t0
    return result
