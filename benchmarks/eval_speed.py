"""Evaluation speed: 200 Push-T episodes (300 steps max) with the MLP score policy at NFE 3, two threads.

The policy is batched over the envs of a wave (`n_envs` episodes step together), so the
denoiser runs once per chunk for the whole wave, and the envs of the wave are stepped in `env_workers`
processes (physics in parallel on the two cores), stepped by `FastPushTEnv` (gym-pusht's physics with
identical states, 2-3x the steps per second). Times
the whole `evaluate` call (policy loading excluded) for each `n_envs`, and the bare physics with random
actions for reference. Writes benchmarks/results/eval_speed.json.

    python benchmarks/eval_speed.py --run runs/pt_B
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro

from scorepolicy import api
from scorepolicy.envs.pusht import PUSHT_TASK, make_pusht_env
from scorepolicy.evaluation import EvalConfig, evaluate
from scorepolicy.files import atomic_write_json
from scorepolicy.provenance import provenance

RESULTS = Path(__file__).parent / "results"


@dataclass
class Args:
    """Evaluation-speed benchmark options."""

    run: Path = Path("runs/pt_B")
    """Run directory of the MLP score policy."""
    episodes: int = 200
    """Episodes per timing."""
    nfe: int = 3
    """Denoiser evaluations per chunk."""
    threads: int = 2
    """torch threads."""
    n_envs: tuple[int, ...] = (200, 100)
    """Wave sizes to time (the policy's batch)."""
    env_workers: int = 2
    """Processes stepping the envs of a wave (one per core)."""
    physics_steps: int = 6000
    """Random-action env steps timed for the physics-only reference."""
    target_seconds: float = 30.0
    """The target for 200 episodes."""
    out: Path = RESULTS / "eval_speed.json"
    """Result JSON."""


def physics_rate(steps: int, fast: bool = True) -> float:
    """Env steps per second of bare Push-T physics with random actions (one env, resets included);
    `fast=False` times gym-pusht's own PushTEnv."""
    env = make_pusht_env(fast=fast)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    t0 = time.perf_counter()
    for i in range(steps):
        _, _, terminated, truncated, _ = env.step(rng.uniform(50, 450, 2).astype(np.float32))
        if terminated or truncated or i % 300 == 299:
            env.reset(seed=i)
    return steps / (time.perf_counter() - t0)


def time_eval(args: Args, n_envs: int) -> dict[str, Any]:
    """Evaluate once with the given wave size; wall-clock seconds and the result summary."""
    policy = api.load_policy(args.run, nfe=args.nfe)
    cfg = EvalConfig(episodes=args.episodes, n_envs=n_envs, env_workers=args.env_workers, progress=False)
    t0 = time.perf_counter()
    result = evaluate(policy, PUSHT_TASK, cfg)
    seconds = time.perf_counter() - t0
    steps = sum(int(e.get("length", 0)) for e in result["episodes"])
    return {
        "n_envs": n_envs,
        "seconds": round(seconds, 2),
        "env_steps": steps,
        "steps_per_second": round(steps / seconds, 1),
        "success_rate": result["success_rate"],
        "success_ci": result["success_ci"],
        "mean_score": result.get("mean_score"),
        "behaviour_entropy": result.get("behaviour_entropy"),
    }


def main(args: Args) -> dict[str, Any]:
    """Run the timings, print them and write the JSON."""
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rate = physics_rate(args.physics_steps)
    gym_rate = physics_rate(args.physics_steps, fast=False)
    timings = []
    for n_envs in args.n_envs:
        timing = time_eval(args, n_envs)
        timings.append(timing)
        print(
            f"n_envs {n_envs:4d}: {timing['seconds']:6.1f} s for {args.episodes} episodes "
            f"({timing['env_steps']} steps, {timing['steps_per_second']:.0f} steps/s), "
            f"success {timing['success_rate']:.3f}"
        )
    best = min(timings, key=lambda t: t["seconds"])
    out = {
        "run": str(args.run),
        "episodes": args.episodes,
        "max_steps": PUSHT_TASK.max_steps,
        "nfe": args.nfe,
        "threads": args.threads,
        "env_workers": args.env_workers,
        "physics_steps_per_second": round(rate, 1),
        "gym_pusht_physics_steps_per_second": round(gym_rate, 1),
        "physics_only_seconds_estimate": round(best["env_steps"] / rate, 2),
        "timings": timings,
        "best_seconds": best["seconds"],
        "best_n_envs": best["n_envs"],
        "target_seconds": args.target_seconds,
        "meets_target": best["seconds"] < args.target_seconds,
        "cpu_count": os.cpu_count(),
        "load_average_1min_before": round(load_before, 2),
        "note": "wall-clock, policy loading excluded; a load average above 0.5 means other jobs shared the cores",
    }
    print(
        f"physics alone: {rate:.0f} steps/s (gym-pusht's own env: {gym_rate:.0f}; "
        f"~{out['physics_only_seconds_estimate']} s for these steps); "
        f"best: {best['seconds']} s with n_envs {best['n_envs']} (target < {args.target_seconds} s)"
    )
    out["provenance"] = provenance("pusht")
    atomic_write_json(args.out, out)
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
