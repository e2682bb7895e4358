"""Dataset formats: a dataset is opened once (`open_dataset`: format detected, container checked), then
validated, loaded and summarised through that one `OpenedDataset`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from scorepolicy.core.episodes import Episodes
from scorepolicy.errors import ScorePolicyError

if TYPE_CHECKING:
    from scorepolicy.data.lerobot_video import FrameOptions
    from scorepolicy.data.validate import ValidationReport

DataFormat = Literal["lerobot", "zarr", "robomimic"]
"""Readable formats: LeRobot v2.1/v3.0 directory, Diffusion-Policy replay zarr, robomimic HDF5."""
DATA_FORMATS: tuple[str, ...] = get_args(DataFormat)


def detect_format(path: str | Path) -> DataFormat:
    """The format of the dataset at `path`, from its layout (no data is read)."""
    from scorepolicy.data.lerobot import is_lerobot_dir
    from scorepolicy.data.robomimic import is_hdf5_file

    p = Path(path).expanduser()
    if not p.exists():
        raise ScorePolicyError(f"{p}: dataset not found; check the path")
    if p.is_dir():
        if is_lerobot_dir(p):
            return "lerobot"
        if (p / ".zgroup").is_file() or (p / "zarr.json").is_file() or p.suffix == ".zarr":
            return "zarr"
        if (p / "meta").is_dir() and (p / "data").is_dir():
            return "lerobot"  # a LeRobot layout whose info.json is missing: let the reader say so
    elif is_hdf5_file(p):
        return "robomimic"
    raise ScorePolicyError(
        f"{p}: format not recognised (expected a LeRobot directory with meta/info.json, a replay .zarr "
        f"directory or a robomimic .hdf5 file); pass --format one of {', '.join(DATA_FORMATS)}"
    )


def check_finite(episodes: Episodes) -> None:
    """Raise a one-line error naming the first float key and step holding NaN or inf."""
    for key, arr in episodes.data.items():
        if arr.dtype.kind != "f":
            continue
        bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            episode = int(np.searchsorted(episodes.episode_ends, row, side="right"))
            raise ScorePolicyError(
                f"{episodes.source}: '{key}' holds NaN/inf at step {row} (episode {episode}); clean or drop that "
                "episode (`scorepolicy data validate` lists every problem)"
            )


@dataclass(frozen=True)
class OpenedDataset:
    """A dataset whose format is known and whose container was checked (a replay zarr's metadata is
    safe to decode); validate, load and summarise it without detecting anything again."""

    path: Path
    """The dataset (directory or file)."""
    format: DataFormat
    """Its format, detected once or forced."""

    def load(
        self,
        keys: Sequence[str] | None = None,
        *,
        finite: bool = True,
        images: bool = False,
        frames: FrameOptions | None = None,
    ) -> Episodes:
        """Read it into `Episodes` (`keys`, `finite`, `images` and `frames` as in `load_dataset`)."""
        return _load(self, keys, finite, images, frames)

    def validate(self, horizon: int | None = None) -> ValidationReport:
        """Every problem found in one pass (never raises for bad data)."""
        from scorepolicy.data.validate import validate_opened

        return validate_opened(self, horizon)

    def require_valid(self, horizon: int | None = None) -> None:
        """Raise `DataValidationError` (the full report) when validation finds any problem."""
        from scorepolicy.data.validate import DataValidationError

        report = self.validate(horizon)
        if not report.ok:
            raise DataValidationError(report)

    def info(self) -> dict[str, Any]:
        """Episodes, frames, fps, features with statistics, tasks and absent streams."""
        from scorepolicy.data.inspect import summarise

        return summarise(self)


def open_dataset(path: str | Path, format: DataFormat | None = None) -> OpenedDataset:
    """Open the dataset at `path`: its format (detected unless given) and, for a replay zarr, the store's
    layout and every array's metadata checked before any codec runs."""
    if format is not None and format not in DATA_FORMATS:
        raise ScorePolicyError(f"unknown data format {format!r}; choose one of {', '.join(DATA_FORMATS)}")
    root = Path(path).expanduser()
    fmt = format or detect_format(root)
    if fmt == "zarr":
        from scorepolicy.data.zarr_replay import check_replay_store

        check_replay_store(root)
    return OpenedDataset(root, fmt)


def load_dataset(
    path: str | Path | OpenedDataset,
    format: DataFormat | None = None,
    *,
    keys: Sequence[str] | None = None,
    finite: bool = True,
    images: bool = False,
    frames: FrameOptions | None = None,
) -> Episodes:
    """Read any supported dataset into `Episodes` (format detected from the path unless given).

    `keys` selects what to read: LeRobot feature names, replay-zarr data keys, or robomimic obs keys
    (default: every vector feature; LeRobot videos and zarr images only when named). With `finite`
    (default) NaN or inf in a float array is a one-line error. With `images`, the camera frames come too, as
    uint8 (N, H, W, 3) arrays: a replay zarr's image arrays as stored, a LeRobot dataset's image and video
    features resized by `frames` (default `FrameOptions()`: 96 px high, aspect kept, 4 GB budget);
    robomimic: not supported, a one-line error.
    """
    dataset = path if isinstance(path, OpenedDataset) else open_dataset(path, format)
    return dataset.load(keys, finite=finite, images=images, frames=frames)


def _load(
    dataset: OpenedDataset,
    keys: Sequence[str] | None,
    finite: bool,
    images: bool = False,
    frames: FrameOptions | None = None,
) -> Episodes:
    """The reader of the dataset's format, called on its path."""
    path, fmt = dataset.path, dataset.format
    if fmt == "lerobot":
        from scorepolicy.data.lerobot import read_lerobot

        return read_lerobot(path, keys, check_finite=finite, images=images, frames=frames)
    if fmt == "zarr":
        from scorepolicy.data.zarr_replay import read_replay_zarr

        if finite:
            return read_replay_zarr(path, keys, images)
        return _read_zarr_lenient(path, keys, images)
    if images:
        raise ScorePolicyError(
            f"{path}: camera frames are read from replay zarr and LeRobot datasets, not robomimic"
        )
    from scorepolicy.data.robomimic import read_robomimic

    obs_keys = [k.removeprefix("observation.") for k in keys] if keys is not None else None
    episodes = read_robomimic(path, obs_keys)
    if finite:
        check_finite(episodes)
    return episodes


def _read_zarr_lenient(root: Path, keys: Sequence[str] | None, images: bool = False) -> Episodes:
    """A replay zarr read without the NaN check (for inspection of data that validation flags)."""
    from scorepolicy.data import zarr_replay as zr

    zr.check_replay_store(root)
    ends = zr._read_episode_ends(root)
    data = {}
    for key in zr._select_keys(root, keys, images):
        frames = images and zr.is_image_array(root, key)
        data[key] = zr._as_float32(zr._read_array(root / "data" / key, frames))
    return Episodes(data=data, episode_ends=ends, source=str(root), attrs=zr._read_root_attrs(root))


ConvertTarget = Literal["lerobot-v3", "zarr"]
"""Formats `convert` writes: LeRobot v3.0 (parquet, no videos) or a Diffusion-Policy replay zarr."""


def lerobot_names(episodes: Episodes) -> Episodes:
    """Replay-zarr keys under LeRobot names: `action` stays, `state` -> `observation.state`, others
    -> `observation.<key>` (keys already holding a dot, such as robomimic's, are kept)."""
    data = {}
    for key, arr in episodes.data.items():
        name = key if key == "action" or "." in key else f"observation.{key}"
        data[name] = arr
    return Episodes(
        data=data, episode_ends=episodes.episode_ends, source=episodes.source, attrs=episodes.attrs
    )


def convert_dataset(
    path: str | Path,
    to: ConvertTarget,
    out: str | Path,
    *,
    format: DataFormat | None = None,
    fps: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Read any supported dataset and write it as `to` at `out` (refuses an existing `out` unless overwrite)."""
    target = Path(out).expanduser()
    if target.exists() and not overwrite:
        raise ScorePolicyError(f"{target}: already exists; choose another --out or pass --overwrite")
    dataset = open_dataset(path, format)
    episodes = dataset.load()
    if to == "lerobot-v3":
        from scorepolicy.data.lerobot_write import write_lerobot_v3

        if dataset.format != "lerobot":
            episodes = lerobot_names(episodes)
        return write_lerobot_v3(episodes, target, fps=fps, overwrite=overwrite)
    from scorepolicy.data.zarr_replay import write_replay_zarr

    if fps is not None:
        episodes.attrs["fps"] = fps
    return write_replay_zarr(episodes, target, overwrite=overwrite)
