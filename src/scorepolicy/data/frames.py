"""Camera frames of one episode, and a PNG strip of them (`scorepolicy data plot DATASET --frames 8`).

Only the chosen episode's frames are read: a replay zarr's image arrays for its rows (after the store's
safety check), a LeRobot dataset's video features decoded for its timestamps (image features: their
column). One row of the strip per camera, `n` frames spread evenly from the episode's first to its last.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np

from scorepolicy.data.formats import DataFormat, OpenedDataset, open_dataset
from scorepolicy.data.lerobot_video import FrameOptions
from scorepolicy.data.zarr_replay import frames_as_uint8
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import atomic_write_bytes

FRAME_INCHES = 1.6
"""Width and height of one frame's panel in the strip, in inches."""
TITLE_INCHES = 0.4
"""Height of the strip's title line, in inches."""
DPI = 100
PLOT_FRAMES = FrameOptions(height=160)
"""LeRobot videos are decoded at 160 px high for the strip (aspect kept)."""


def strip_pixels(n_frames: int, n_cameras: int) -> tuple[int, int]:
    """(width, height) in pixels of the PNG strip of `n_frames` frames for `n_cameras` cameras."""
    return round(FRAME_INCHES * n_frames * DPI), round((FRAME_INCHES * n_cameras + TITLE_INCHES) * DPI)


def spread(length: int, n: int) -> np.ndarray:
    """`n` row offsets spread evenly over an episode of `length` frames (first and last included)."""
    return np.unique(np.linspace(0, length - 1, min(n, length)).round().astype(np.int64))


def _zarr_frames(dataset: OpenedDataset, episode: int, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    import zarr

    from scorepolicy.data.zarr_replay import _read_episode_ends, is_image_array

    root = dataset.path
    ends = _read_episode_ends(root)
    _check_episode(root, episode, len(ends))
    start = 0 if episode == 0 else int(ends[episode - 1])
    offsets = spread(int(ends[episode]) - start, n)
    keys = sorted(p.name for p in (root / "data").iterdir() if p.is_dir() and is_image_array(root, p.name))
    out = {}
    for key in keys:
        rows = np.asarray(
            zarr.open_array(str(root / "data" / key), mode="r").get_orthogonal_selection(start + offsets)
        )
        if rows.ndim != 4 or rows.shape[-1] != 3:
            continue
        out[key] = frames_as_uint8(rows, root / "data" / key)
    return out, offsets


def _lerobot_frames(dataset: OpenedDataset, episode: int, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    from scorepolicy.data.lerobot import read_lerobot, read_lerobot_meta
    from scorepolicy.data.lerobot_video import read_cameras

    meta = read_lerobot_meta(dataset.path)
    _check_episode(dataset.path, episode, len(meta.episodes))
    keys = meta.camera_keys
    length = meta.episodes[episode].length
    offsets = spread(length, n)
    if not keys:
        return {}, offsets
    rows = read_lerobot(
        dataset.path, keys=[k for k in ("timestamp",) if k in meta.features], check_finite=False
    )
    part = rows.episode_slice(episode)
    stamps = rows.data.get("timestamp")
    one = dataclasses.replace(meta, episodes=[meta.episodes[episode]])
    videos = [k for k in keys if meta.features[k].get("dtype") == "video"]
    out = read_cameras(one, videos, np.array([length]), None if stamps is None else stamps[part], PLOT_FRAMES)
    for key in [k for k in keys if k not in videos]:  # image columns: read with the rest, then sliced
        out[key] = read_lerobot(dataset.path, keys=[key], frames=PLOT_FRAMES).data[key][part]
    return {k: v[offsets] for k, v in out.items()}, offsets


def _check_episode(root: Path, episode: int, n_episodes: int) -> None:
    if not 0 <= episode < n_episodes:
        raise ScorePolicyError(
            f"{root}: --episode {episode} out of range; the dataset has {n_episodes} episodes"
        )


def episode_frames(
    path: str | Path | OpenedDataset, episode: int = 0, n: int = 8, format: DataFormat | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({camera key: uint8 (n, H, W, 3)}, the frames' offsets in the episode) for `n` frames spread over
    episode `episode`; a one-line error when the dataset has no camera."""
    dataset = path if isinstance(path, OpenedDataset) else open_dataset(path, format)
    if dataset.format == "zarr":
        frames, offsets = _zarr_frames(dataset, episode, n)
    elif dataset.format == "lerobot":
        frames, offsets = _lerobot_frames(dataset, episode, n)
    else:
        frames, offsets = {}, np.zeros(0, np.int64)
    if not frames:
        raise ScorePolicyError(
            f"{dataset.path}: no camera frames to plot (no image array or image/video feature); "
            "plot its trajectories with `scorepolicy data plot` without --frames"
        )
    return frames, offsets


def plot_frames(
    path: str | Path,
    out: Path,
    n: int = 8,
    episode: int = 0,
    format: DataFormat | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """A PNG strip of `n` camera frames spread over one episode, one row per camera."""
    if out.exists() and not overwrite:
        raise ScorePolicyError(f"{out}: already exists; choose another --out or pass --overwrite")
    frames, offsets = episode_frames(path, episode, n, format)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols, rows = len(offsets), len(frames)
    width, height = strip_pixels(cols, rows)
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    top = 1.0 - TITLE_INCHES * DPI / height
    for r, (key, images) in enumerate(frames.items()):
        for c, offset in enumerate(offsets):
            ax = fig.add_axes((c / cols, top - (r + 1) * (top / rows), 1.0 / cols, top / rows))
            ax.imshow(images[c], interpolation="nearest")
            ax.set_axis_off()
            ax.text(2, 2, f"t={int(offset)}", fontsize=7, color="white", va="top", backgroundcolor="black")
        fig.text(0.005, top - (r + 0.5) * top / rows, key, fontsize=7, rotation=90, va="center", color="red")
    fig.suptitle(
        f"{Path(path).name}: episode {episode}, {cols} frames per camera",
        fontsize=9,
        y=1.0 - 0.05 * TITLE_INCHES,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out
