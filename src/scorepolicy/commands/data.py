"""`scorepolicy data ...`: inspect, validate, convert, plot and evaluate offline (argument dataclasses + dispatch).

To add a subcommand: write its dataclass here (or elsewhere), add it to `DataCommand` with
`tyro.conf.subcommand(NAME)`, and give `run_data_command` a branch for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from scorepolicy.commands.generate import Generate, run_generate
from scorepolicy.commands.outputs import check_output_dir, check_output_file
from scorepolicy.data.formats import ConvertTarget, DataFormat
from scorepolicy.errors import check_field
from scorepolicy.files import atomic_write_json


@dataclass
class Info:
    """Summarise a dataset: episodes, frames, fps, features with statistics, tasks, absent streams."""

    path: tyro.conf.Positional[Path]
    """Dataset: LeRobot v2.1/v3.0 directory, Diffusion-Policy replay zarr, or robomimic HDF5 file."""
    format: DataFormat | None = None
    """Force the format (default: detected from the path)."""
    json: Path | None = None
    """Also write the summary as JSON here."""
    overwrite: bool = False
    """Replace an existing --json file."""


@dataclass
class Validate:
    """Check a dataset in one pass; print every problem (one line each); exit 1 if any."""

    path: tyro.conf.Positional[Path]
    """Dataset to check."""
    format: DataFormat | None = None
    """Force the format (default: detected from the path)."""
    horizon: int | None = 16
    """Flag episodes shorter than this many frames (the policy's action horizon); 0 or unset: no check."""
    json: Path | None = None
    """Also write the report as JSON here."""
    overwrite: bool = False
    """Replace an existing --json file."""

    def __post_init__(self) -> None:
        check_field("--horizon", self.horizon, at_least=0)


@dataclass
class Convert:
    """Convert any supported dataset to LeRobot v3.0 (parquet, no videos) or a replay zarr."""

    path: tyro.conf.Positional[Path]
    """Dataset to read."""
    to: ConvertTarget = "lerobot-v3"
    """Output format."""
    out: Path = Path("converted")
    """Output directory (must not exist unless --overwrite)."""
    format: DataFormat | None = None
    """Force the input format (default: detected from the path)."""
    fps: float | None = None
    """Frame rate, when the input does not record it (e.g. 10 for Push-T)."""
    overwrite: bool = False
    """Replace an existing --out."""


@dataclass
class Plot:
    """Plot action and state trajectories and action histograms to a PNG, or with --frames N a strip of N
    camera frames spread over one episode (one row per camera)."""

    path: tyro.conf.Positional[Path]
    """Dataset to plot."""
    out: Path = Path("dataset.png")
    """PNG to write (must not exist unless --overwrite)."""
    format: DataFormat | None = None
    """Force the format (default: detected from the path)."""
    max_episodes: int = 20
    """Episodes drawn in the trajectory panels."""
    frames: int = 0
    """Camera frames per camera to draw over one episode instead of the trajectories (0: trajectories)."""
    episode: int = 0
    """With --frames: the episode whose frames are drawn."""
    overwrite: bool = False
    """Replace an existing --out."""

    def __post_init__(self) -> None:
        check_field("--max-episodes", self.max_episodes, at_least=1)
        check_field("--frames", self.frames, at_least=0)
        check_field("--episode", self.episode, at_least=0)


@dataclass
class OfflineEval:
    """Action-prediction error on a run's held-out episodes, vs the mean action and baseline runs."""

    run: tyro.conf.Positional[Path]
    """Run directory written by `scorepolicy train`."""
    data: Path | None = None
    """Dataset (default: the one the run was trained on)."""
    baselines: tuple[Path, ...] = ()
    """Other runs on the same data to score on the same windows (e.g. an MSE-BC run of the same size)."""
    seed: int = 0
    """Seed of the policies' sampling noise."""
    nfe: int | None = None
    """Denoiser evaluations per chunk for the run (default: its config)."""
    json: Path | None = None
    """Also write the result as JSON here."""
    overwrite: bool = False
    """Replace an existing --json file."""

    def __post_init__(self) -> None:
        check_field("--nfe", self.nfe, at_least=1)


DataCommand = (
    Annotated[Info, tyro.conf.subcommand("info")]
    | Annotated[Validate, tyro.conf.subcommand("validate")]
    | Annotated[Convert, tyro.conf.subcommand("convert")]
    | Annotated[Plot, tyro.conf.subcommand("plot")]
    | Annotated[OfflineEval, tyro.conf.subcommand("offline-eval")]
    | Annotated[Generate, tyro.conf.subcommand("generate")]
)
"""The `scorepolicy data` subcommands."""


def _info(cmd: Info) -> int:
    from scorepolicy.data.inspect import dataset_info, format_info

    check_output_file(cmd.json, "--json", overwrite=cmd.overwrite, inputs=[cmd.path])
    info = dataset_info(cmd.path, cmd.format)
    print(format_info(info))
    if cmd.json is not None:
        atomic_write_json(cmd.json, info)
    return 0


def _validate(cmd: Validate) -> int:
    from scorepolicy.data.validate import validate_dataset

    check_output_file(cmd.json, "--json", overwrite=cmd.overwrite, inputs=[cmd.path])
    report = validate_dataset(cmd.path, cmd.format, horizon=cmd.horizon or None)
    for line in report.lines():
        print(line)
    print(report.summary())
    if cmd.json is not None:
        atomic_write_json(
            cmd.json, {"path": report.path, "format": report.format, "problems": report.lines()}
        )
    return 0 if report.ok else 1


def _convert(cmd: Convert) -> int:
    from scorepolicy.data.formats import convert_dataset

    check_output_dir(
        cmd.out, "--out", overwrite=True, inputs=[cmd.path]
    )  # convert_dataset checks --overwrite
    out = convert_dataset(cmd.path, cmd.to, cmd.out, format=cmd.format, fps=cmd.fps, overwrite=cmd.overwrite)
    print(f"wrote {cmd.to} dataset: {out}")
    return 0


def _plot(cmd: Plot) -> int:
    from scorepolicy.data.inspect import plot_dataset

    check_output_file(cmd.out, "--out", overwrite=True, inputs=[cmd.path])  # plot_dataset checks --overwrite
    if cmd.frames:
        from scorepolicy.data.frames import plot_frames

        out = plot_frames(cmd.path, cmd.out, cmd.frames, cmd.episode, cmd.format, overwrite=cmd.overwrite)
        print(f"frames: {out}")
        return 0
    out = plot_dataset(cmd.path, cmd.out, cmd.format, max_episodes=cmd.max_episodes, overwrite=cmd.overwrite)
    print(f"plot: {out}")
    return 0


def _offline_eval(cmd: OfflineEval) -> int:
    from scorepolicy.api.offline_eval import format_offline, offline_evaluate

    check_output_file(cmd.json, "--json", overwrite=cmd.overwrite, inputs=[p for p in [cmd.data] if p])
    result = offline_evaluate(cmd.run, cmd.data, baselines=cmd.baselines, seed=cmd.seed, nfe=cmd.nfe)
    print(format_offline(result))
    if cmd.json is not None:
        atomic_write_json(cmd.json, result)
    return 0


def run_data_command(cmd: object) -> int:
    """Run one `scorepolicy data` subcommand; returns the exit status (user errors raise ScorePolicyError)."""
    if isinstance(cmd, Generate):
        return run_generate(cmd)
    if isinstance(cmd, Info):
        return _info(cmd)
    if isinstance(cmd, Validate):
        return _validate(cmd)
    if isinstance(cmd, Convert):
        return _convert(cmd)
    if isinstance(cmd, Plot):
        return _plot(cmd)
    if isinstance(cmd, OfflineEval):
        return _offline_eval(cmd)
    raise TypeError(f"not a data command: {type(cmd).__name__}")
