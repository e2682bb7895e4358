"""`scorepolicy data generate`: scripted-expert demonstrations from a simulator into a replay zarr."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from scorepolicy.commands.outputs import check_output_dir
from scorepolicy.data.zarr_replay import write_replay_zarr
from scorepolicy.errors import ScorePolicyError


@dataclass
class Generate:
    """Generate successful scripted-expert demonstrations (with each episode's goal) into a replay zarr."""

    simulator: tyro.conf.Positional[Literal["metaworld"]]
    """Simulator whose scripted experts record the demonstrations."""
    out: Path
    """Output replay zarr (train on it with `scorepolicy train --task metaworld-mt10 --data OUT`)."""
    tasks: str = "mt10"
    """'mt10', 'mt50' or comma-separated Meta-World v3 task names."""
    episodes: int = 50
    """Successful episodes to keep per task."""
    seed: int = 0
    """Seed of the demonstration goals (evaluation goals never coincide with them)."""
    max_steps: int = 500
    """Step limit of one expert episode."""
    overwrite: bool = False
    """Replace an existing output."""


def run_generate(cmd: Generate) -> int:
    """Generate, write the zarr (expert statistics in its attributes) and print per-task expert success."""
    from scorepolicy.envs.metaworld import generate_metaworld_demos, resolve_tasks

    check_output_dir(cmd.out, "--out", overwrite=True)  # never into a run's own files
    if cmd.out.exists() and not cmd.overwrite:
        raise ScorePolicyError(f"{cmd.out}: already exists; choose another --out or pass --overwrite")
    tasks = resolve_tasks(cmd.tasks)
    episodes, report = generate_metaworld_demos(tasks, cmd.episodes, seed=cmd.seed, max_steps=cmd.max_steps)
    episodes.attrs["expert"] = report
    write_replay_zarr(episodes, cmd.out, overwrite=cmd.overwrite)
    print(f"{'task':28s} {'kept':>5s} {'attempts':>8s} {'expert success':>14s}")
    for name, r in report.items():
        print(f"{name:28s} {r['successes']:5.0f} {r['attempts']:8.0f} {r['success_rate']:14.1%}")
    mean = sum(r["success_rate"] for r in report.values()) / len(report)
    print(
        f"mean expert success {mean:.1%}; {episodes.n_episodes} episodes, {episodes.n_steps} steps -> {cmd.out}"
    )
    return 0
