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
from scorepolicy.data.formats import ConvertTarget, DataFormat
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
    """Plot action and state trajectories and action histograms to a PNG."""

    path: tyro.conf.Positional[Path]
    """Dataset to plot."""
    out: Path = Path("dataset.png")
    """PNG to write (must not exist unless --overwrite)."""
    format: DataFormat | None = None
    """Force the format (default: detected from the path)."""
    max_episodes: int = 20
    """Episodes drawn in the trajectory panels."""
    overwrite: bool = False
    """Replace an existing --out."""


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

    info = dataset_info(cmd.path, cmd.format)
    print(format_info(info))
    if cmd.json is not None:
        atomic_write_json(cmd.json, info)
    return 0


def _validate(cmd: Validate) -> int:
    from scorepolicy.data.validate import validate_dataset

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

    out = convert_dataset(cmd.path, cmd.to, cmd.out, format=cmd.format, fps=cmd.fps, overwrite=cmd.overwrite)
    print(f"wrote {cmd.to} dataset: {out}")
    return 0


def _plot(cmd: Plot) -> int:
    from scorepolicy.data.inspect import plot_dataset

    out = plot_dataset(cmd.path, cmd.out, cmd.format, max_episodes=cmd.max_episodes, overwrite=cmd.overwrite)
    print(f"plot: {out}")
    return 0


def _offline_eval(cmd: OfflineEval) -> int:
    from scorepolicy.api.offline_eval import format_offline, offline_evaluate

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
