"""Improve a trained run with RL in its simulator (`scorepolicy improve`): DSRL, residual RL or best-of-K.

The driver checks everything a user can get wrong before writing anything, copies the base run into
the output (with its sha256), evaluates the base as the curve's first point, and hands an `RLContext`
to the method; `resume` continues from the method's last checkpoint.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import tyro

from scorepolicy.api.runs import load_policy, run_task_name
from scorepolicy.core.task import Task
from scorepolicy.envs.registry import get_task
from scorepolicy.envs.subtasks import restrict_subtask
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import atomic_write_json, read_json, to_dict
from scorepolicy.policies import ChunkPolicy
from scorepolicy.policies.score_policy import DETERMINISTIC_SAMPLERS
from scorepolicy.provenance import provenance
from scorepolicy.rl.best_of_k_config import BestOfKConfig
from scorepolicy.rl.common import (
    STATE_DIR,
    RLContext,
    base_weights,
    copy_base,
    freeze_base,
    get_method,
    load_verified_base,
    write_improved_config,
)
from scorepolicy.rl.curves import Curve, CurveConfig
from scorepolicy.rl.dsrl_config import DSRLConfig
from scorepolicy.rl.residual import ResidualConfig

REWARDS: dict[str, tuple[str, ...]] = {
    "pusht": ("success", "coverage"),
    "pusht-keypoints": ("coverage", "success"),
    "obstacles": ("success",),
    "metaworld-mt10": ("success", "shaped"),
}
"""Reward kinds per task (the first is the default); other tasks: 'success'."""


@dataclass
class ImproveJob:
    """Improve a trained run with RL (DSRL noise-space steering, residual RL, or best-of-K policy iteration),
    keeping its weights frozen."""

    run: tyro.conf.Positional[Path]
    """Run directory of the trained base policy (scorepolicy train --out)."""
    method: Literal["dsrl", "residual", "best-of-k"] = "dsrl"
    """RL method: 'dsrl' (noise-space actor), 'residual' (per-step residual on the base's actions) or
    'best-of-k' (a critic picks the best of K base chunks; Monte-Carlo policy iteration)."""
    env_steps: int = 500_000
    """Budget of real env steps (every executed action counts one)."""
    out: Path = Path("runs/improved")
    """Output run directory of the improved policy (evaluable like any run)."""
    resume: bool = False
    """Continue the improvement in --out from its last checkpoint."""
    threads: int = 1
    """Torch threads."""
    eval_every: int = 50_000
    """Env steps between curve points (success with Wilson interval, mean score)."""
    eval_episodes: int = 50
    """Episodes per curve point."""
    eval_seed: int = 0
    """First env seed of the curve's episodes (validation seeds; never the training or test seeds)."""
    n_envs: int = 8
    """Training envs stepped together (the base runs batched over them)."""
    train_seed: int = 1_000_000
    """First env seed of the training episodes (then +1 per episode)."""
    reward: Literal["coverage", "success", "shaped"] | None = None
    """Reward: Push-T 'success' (default; −1 per step until success) or 'coverage' (env reward − 1 per step,
    which hardly tells 0.94 coverage from success at 0.95); obstacles 'success';
    Meta-World 'success' (default, sparse) or 'shaped' (its env reward)."""
    checkpoint_every: int = 20_000
    """Env steps between resumable checkpoints (OUT/rl_state)."""
    seed: int = 0
    """RL seed (networks, exploration)."""
    nfe: int | None = None
    """Denoiser calls per chunk of the base (default: the run's)."""
    sampler: Literal["euler", "heun", "ddim", "dpmpp_2m", "euler_ancestral"] | None = None
    """Base sampler override (DSRL needs a deterministic one: ddim, euler, heun or dpmpp_2m)."""
    max_minutes: float | None = None
    """Wall-clock budget of the training in minutes (besides --env-steps); None: no limit."""
    subtask: str | None = None
    """Multi-task suites (Meta-World MT10): train and evaluate on one task only, e.g. peg-insert-side; its
    seeds s are the suite's s·n + j (`envs.subtasks`). Recorded in config.json, so `eval OUT` runs it."""
    guidance: float | None = None
    """Classifier-free guidance λ of a goal-conditioned base (default: the run's); kept by the improved run."""
    progress: bool = True
    """Show a progress bar of env steps."""
    dsrl: DSRLConfig = field(default_factory=DSRLConfig)
    """DSRL settings (--method dsrl)."""
    residual: ResidualConfig = field(default_factory=ResidualConfig)
    """Residual RL settings (--method residual)."""
    best_of_k: BestOfKConfig = field(default_factory=BestOfKConfig)
    """Best-of-K settings (--method best-of-k)."""


def default_reward(task: str) -> str:
    """The default reward kind of a task."""
    return REWARDS.get(task, ("success",))[0]


def check_job(job: ImproveJob) -> tuple[Task, str]:
    """One-line errors for bad input, before anything is written; returns (task, reward kind)."""
    get_method(job.method)
    base_weights(job.run)
    task = run_task_name(job.run)
    the_task = restrict_subtask(get_task(task), job.subtask)
    reward = job.reward or default_reward(task)
    if reward not in REWARDS.get(task, ("success",)):
        valid = ", ".join(REWARDS.get(task, ("success",)))
        raise ScorePolicyError(f"--reward {reward}: not available for the {task} task; valid: {valid}")
    if job.env_steps < 1 or job.eval_every < 1 or job.checkpoint_every < 1 or job.n_envs < 1:
        raise ScorePolicyError("--env-steps, --eval-every, --checkpoint-every and --n-envs must be positive")
    if job.eval_seed < job.train_seed + job.env_steps and job.train_seed < job.eval_seed + job.eval_episodes:
        raise ScorePolicyError(
            f"--eval-seed {job.eval_seed}..{job.eval_seed + job.eval_episodes - 1} overlaps the training seeds "
            f"from --train-seed {job.train_seed}; pick disjoint ranges"
        )
    if job.out.exists() and any(job.out.iterdir()) and not job.resume:
        raise ScorePolicyError(
            f"{job.out}: exists and is not empty; pass --resume to continue it or another --out"
        )
    if job.resume and job.out.exists() and not (job.out / "improve_config.json").is_file():
        raise ScorePolicyError(
            f"{job.out}: not an improvement run (improve_config.json missing); cannot --resume"
        )
    if job.resume and (job.out / "improve_config.json").is_file():
        kept = read_json(job.out / "improve_config.json").get("subtask")
        if kept != job.subtask:
            raise ScorePolicyError(
                f"--subtask {job.subtask}: {job.out} was trained with --subtask {kept}; resume with that one"
            )
    return the_task, reward


def check_base(job: ImproveJob, base: ChunkPolicy) -> None:
    """The method's requirements on the base policy."""
    if job.method == "best-of-k" and base.cfg.kind != "score":
        raise ScorePolicyError(
            f"{job.run}: best-of-K needs a score policy (kind 'score'), got '{base.cfg.kind}'"
        )
    if job.method == "dsrl":
        if base.cfg.kind != "score":
            raise ScorePolicyError(
                f"{job.run}: DSRL needs a score policy (kind 'score'), got '{base.cfg.kind}'"
            )
        sampler = base.cfg.diffusion.sampler
        if sampler not in DETERMINISTIC_SAMPLERS:
            raise ScorePolicyError(
                f"{job.run}: DSRL needs a deterministic sampler, the run uses '{sampler}'; "
                f"pass --sampler ddim (or {', '.join(s for s in DETERMINISTIC_SAMPLERS if s != 'ddim')})"
            )


def method_config(job: ImproveJob) -> Any:
    """The selected method's config from the job (`--dsrl.*` / `--residual.*`)."""
    cfg = getattr(job, job.method.replace("-", "_"), None)
    if cfg is None:
        cfg_cls, _ = get_method(job.method)
        cfg = cfg_cls()
    return cfg


def improve_checks(job: ImproveJob) -> tuple[Task, str, ChunkPolicy]:
    """Every check of `improve` (nothing written): (task, reward kind, base loaded for inference)."""
    task, reward = check_job(job)
    base = load_policy(job.run, job.nfe, job.sampler, guidance=job.guidance)
    check_base(job, base)
    return task, reward, base


def improve(job: ImproveJob) -> dict[str, Any]:
    """Run an improvement job (see `ImproveJob`); returns {'run_dir', 'curve', 'env_steps'}."""
    torch.set_num_threads(job.threads)
    task, reward, base = improve_checks(job)
    _, train_fn = get_method(job.method)
    cfg = method_config(job)
    resumed = job.resume and (job.out / "improve_config.json").is_file()
    if resumed:
        base = load_verified_base(job.out)
        base.optimize_for_inference()
    else:
        _start_run(job, base, cfg, reward)
    freeze_base(base)
    curve = Curve(
        job.out, task, CurveConfig(job.eval_episodes, job.eval_seed, n_envs=min(50, job.eval_episodes))
    )
    _curve_start(curve, base, job.out, resumed)
    ctx = RLContext(
        base=base,
        task=task,
        run_dir=job.out,
        env_steps=job.env_steps,
        n_envs=job.n_envs,
        train_seed=job.train_seed,
        reward=reward,
        evaluate=curve.point,
        eval_every=job.eval_every,
        checkpoint_every=job.checkpoint_every,
        progress=job.progress,
        seed=job.seed,
        max_minutes=job.max_minutes,
    )
    started = time.monotonic()

    def evaluate(policy: Any, step: int) -> dict[str, Any]:
        # a method that only watches ctx.env_steps still stops at the first curve point past the time
        result = curve.point(policy, step)
        if ctx.out_of_budget(step, started):
            ctx.env_steps = min(ctx.env_steps, step)
        return result

    ctx.evaluate = evaluate
    try:
        train_fn(ctx, cfg, resumed)
    finally:
        curve.close()
    return {"run_dir": str(job.out), "curve": curve.rows(), "env_steps": job.env_steps}


def _start_run(job: ImproveJob, base: ChunkPolicy, cfg: Any, reward: str) -> None:
    """A fresh output directory: the base copy + hash, config.json, improve_config.json."""
    if job.out.exists():
        shutil.rmtree(job.out)  # empty (checked), or a resume without improve_config.json
    try:
        sha = copy_base(job.run, job.out)
        write_improved_config(job.out, job.method, to_dict(cfg), reward, base, sha, job.subtask)
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(job).items()}
        record = {
            **settings,
            "reward": reward,
            "base_sha256": sha,
            "provenance": provenance(run_task_name(job.run)),
        }
        atomic_write_json(job.out / "improve_config.json", record)
    except BaseException:
        shutil.rmtree(job.out, ignore_errors=True)
        raise


def _curve_start(curve: Curve, base: ChunkPolicy, out: Path, resumed: bool) -> None:
    """The base as the curve's first point; on resume keep only the points before the checkpoint."""
    state = out / STATE_DIR / "state.json"
    if resumed and state.is_file():
        step = int(read_json(state)["progress"]["env_steps"])
        curve.truncate(step - 1)
        return
    curve.truncate(-1)
    curve.point(base, 0)
