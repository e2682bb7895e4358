"""`scorepolicy guard`: calibrate a run-time failure monitor for a run, and benchmark it under perturbations."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from scorepolicy.commands.outputs import check_output_dir, check_output_file
from scorepolicy.errors import check_field
from scorepolicy.files import atomic_write_json


@dataclass
class GuardCalibrate:
    """Roll out a run, keep its successful episodes and calibrate a FIPER monitor with false-alarm rate ≤ δ.

    Half of the successes fit the observation-novelty networks, the other half set the conformal
    thresholds: δ = 0.05 needs 19 threshold episodes (about 38 successes), δ = 0.1 needs 9.
    """

    run: tyro.conf.Positional[Path]
    """Run directory written by `scorepolicy train` (a score policy)."""
    out: Path
    """Directory for the monitor (monitor.safetensors + monitor.json), e.g. RUN/guard."""
    episodes: int = 50
    """Calibration episodes to roll out (only the successful ones are used)."""
    delta: float = 0.05
    """Allowed false-alarm rate on successful episodes."""
    seed: int = 300_000
    """First calibration env seed (apart from select's 0.. and the reported evaluation seeds)."""
    n_samples: int = 8
    """B: chunks sampled per decision for the entropy score."""
    window: int = 8
    """Decisions summed in each windowed score (a decision = one chunk, n_action_steps env steps)."""
    style: Literal["episode", "step", "normalized"] = "episode"
    """'episode': one threshold per score (the ≤ δ guarantee); 'step': per decision index (not guaranteed);
    'normalized': per decision index with the ≤ δ guarantee (shape from the RND-fitting episodes)."""
    rule: Literal["and", "rnd", "ace"] = "and"
    """'and': alarm when both scores exceed (FIPER); 'rnd' / 'ace': one score alone."""
    positions: Literal["action", "cumsum"] = "action"
    """How the entropy reads positions from actions: as positions (Push-T) or summed velocities (obstacles)."""
    nfe: int | None = None
    """Denoiser evaluations per chunk (default: the run's config); eval --monitor must use the same."""
    sampler: str | None = None
    """Sampler override (default: the run's config)."""
    n_envs: int = 50
    """Environments stepped together."""
    threads: int = 1
    """torch threads."""
    overwrite: bool = False
    """Replace a monitor already in --out."""

    def __post_init__(self) -> None:
        for flag, value in (
            ("--episodes", self.episodes),
            ("--n-envs", self.n_envs),
            ("--threads", self.threads),
        ):
            check_field(flag, value, at_least=1)
        check_field("--delta", self.delta, above=0, below=1)
        check_field("--n-samples", self.n_samples, at_least=2)
        check_field("--window", self.window, at_least=1)
        check_field("--nfe", self.nfe, at_least=1)


@dataclass
class GuardBench:
    """Benchmark a monitor per condition: TPR, TNR, accuracy, detection time, TWA (with intervals), false
    alarms on fresh successes, and the single-score baselines on the same episodes."""

    run: tyro.conf.Positional[Path]
    """Run directory written by `scorepolicy train`."""
    conditions: str = "nominal,obs-noise,block-shift,unseen-start"
    """Comma-separated conditions to roll out under."""
    monitor: Path | None = None
    """A calibrated monitor directory (default: calibrate one first with --calibration-episodes)."""
    calibration_episodes: int = 150
    """Calibration episodes when no --monitor is given (seeds 300000..)."""
    delta: float = 0.05
    """False-alarm rate to calibrate for when no --monitor is given."""
    episodes: int = 100
    """Test episodes per condition (seeds --seed ..)."""
    seed: int | None = None
    """First test seed (default: the task's, 100000 for Push-T)."""
    select_seed: int | None = 400_000
    """First seed of --episodes validation episodes per condition on which each rule's window and threshold
    style are chosen before the test episodes are scored (None: keep the monitor's)."""
    nfe: int | None = None
    """Denoiser evaluations per chunk (default: the run's config)."""
    n_envs: int = 50
    """Environments stepped together."""
    threads: int = 1
    """torch threads."""
    json: Path | None = None
    """Write the result JSON here (per condition and rule, false alarms, window sweep, overhead, provenance)."""
    plot: Path | None = None
    """Write a PNG of both scores over time for a failing and a succeeding episode."""
    positions: Literal["action", "cumsum"] = "action"
    """When calibrating here: actions are positions (Push-T) or velocities to sum (obstacle task)."""
    overwrite: bool = False
    """Replace existing --json / --plot files."""

    def __post_init__(self) -> None:
        for flag, value in (
            ("--episodes", self.episodes),
            ("--calibration-episodes", self.calibration_episodes),
            ("--n-envs", self.n_envs),
            ("--threads", self.threads),
        ):
            check_field(flag, value, at_least=1)
        check_field("--delta", self.delta, above=0, below=1)
        check_field("--nfe", self.nfe, at_least=1)


GuardCommand = (
    Annotated[GuardCalibrate, tyro.conf.subcommand("calibrate")]
    | Annotated[GuardBench, tyro.conf.subcommand("bench")]
)
"""The `scorepolicy guard` subcommands."""


def run_guard_command(cmd: object) -> int:
    """Run one `scorepolicy guard` subcommand; returns the exit status (user errors raise ScorePolicyError)."""
    from scorepolicy import api

    if isinstance(cmd, GuardCalibrate):
        check_output_dir(cmd.out, "--out", overwrite=cmd.overwrite, pattern="monitor.*")
        from scorepolicy.api.guard import calibrate_run
        from scorepolicy.guard import GuardSettings

        settings = GuardSettings(
            n_samples=cmd.n_samples,
            window=cmd.window,
            style=cmd.style,
            rule=cmd.rule,
            positions=cmd.positions,
        )
        with api.torch_threads(cmd.threads):
            monitor = calibrate_run(
                cmd.run,
                cmd.episodes,
                cmd.delta,
                out=cmd.out,
                seed=cmd.seed,
                settings=settings,
                nfe=cmd.nfe,
                sampler=cmd.sampler,
                n_envs=cmd.n_envs,
            )
        info = monitor.info
        print(
            f"calibrated on {info['n_threshold']} successful episodes ({info['n_fit']} more fit the RND; "
            f"{info['successes']}/{info['episodes']} succeeded); δ = {cmd.delta:g}, thresholds "
            + ", ".join(f"{k} {float(v.max()):.4g}" for k, v in monitor.thresholds.items())
            + f"; monitor: {cmd.out}"
        )
        return 0
    if not isinstance(cmd, GuardBench):
        raise TypeError(f"not a guard subcommand: {cmd!r}")
    check_output_file(cmd.json, "--json", overwrite=cmd.overwrite)
    check_output_file(cmd.plot, "--plot", overwrite=cmd.overwrite)
    from scorepolicy.api.guard import BenchConfig, format_bench, run_bench

    names = {f.name for f in dataclasses.fields(BenchConfig)}
    cfg = BenchConfig(**{k: v for k, v in dataclasses.asdict(cmd).items() if k in names})
    with api.torch_threads(cmd.threads):
        result = run_bench(cfg)
    if cmd.json is not None:
        atomic_write_json(cmd.json, result)
    print(format_bench(result))
    return 0
