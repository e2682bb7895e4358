"""Camera frames of a LeRobot dataset: video features decoded with PyAV (optional extra: `pip install
'scorepolicy[video]'`), image features decoded from their parquet column, both resized and held in memory.

Frames are uint8 RGB (N, H, W, 3), one per parquet row, in the rows' order: each row takes the video frame
nearest to its `timestamp` (plus the episode's `from_timestamp` in a v3.0 file holding many episodes),
within half a frame period. Each video file is decoded once, front to back, resized as it is decoded
(swscale's area filter), so memory holds only the small frames. `FrameOptions` sets the size (default:
96 px high, the width keeping the camera's aspect ratio, e.g. 96 × 128 for 480 × 640) and a memory budget:
the bytes of all frames are estimated before anything is decoded and a dataset over budget is refused with
a one-line error naming the option to change.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scorepolicy.errors import ScorePolicyError

if TYPE_CHECKING:
    from scorepolicy.data.lerobot import LeRobotMeta

PYAV_HINT = "decoding video features needs PyAV: pip install 'scorepolicy[video]' (or pip install av)"
BUDGET_FLAG = "--dataset.cameras.budget-mb"
SIZE_FLAG = "--dataset.cameras.height"


@dataclass(frozen=True)
class FrameOptions:
    """How camera frames (LeRobot image and video features) are decoded and held in memory."""

    enabled: bool = True
    """Dataset task: train on the dataset's cameras when it has them all on disk (else: state only)."""
    height: int = 96
    """Height of the frames in pixels after resizing (Diffusion Policy's Push-T frames: 96)."""
    width: int | None = None
    """Width in pixels after resizing; None keeps each camera's aspect ratio (96 × 128 for 480 × 640)."""
    budget_mb: float = 4096.0
    """Most megabytes the decoded frames of all cameras may take in memory; larger datasets are refused."""

    def __post_init__(self) -> None:
        if self.height < 1 or (self.width is not None and self.width < 1):
            raise ScorePolicyError(f"{SIZE_FLAG} and --dataset.cameras.width must be ≥ 1 px")
        if not self.budget_mb > 0:
            raise ScorePolicyError(f"{BUDGET_FLAG} must be > 0, got {self.budget_mb!r}")

    def size_for(self, source_hw: tuple[int, int]) -> tuple[int, int]:
        """(height, width) of the resized frames of a camera whose frames are `source_hw`."""
        if self.width is not None:
            return self.height, self.width
        h, w = source_hw
        return self.height, max(1, round(self.height * w / h))


def camera_source_shape(feature: dict[str, Any]) -> tuple[int, int]:
    """(height, width) of a LeRobot image/video feature from its declared shape (HWC, or CHW by its names)."""
    shape = [int(s) for s in feature.get("shape") or ()]
    names = feature.get("names")
    if len(shape) != 3:
        raise ScorePolicyError(
            f"camera feature shape must have 3 entries (height, width, channels), got {shape}"
        )
    if isinstance(names, list) and len(names) == 3 and names[0] in ("channel", "channels"):
        return shape[1], shape[2]
    return shape[0], shape[1]


def check_budget(
    root: Path, n_frames: int, shapes: dict[str, tuple[int, int]], options: FrameOptions
) -> None:
    """A one-line error when the frames of every camera would take more than the budget."""
    total = sum(n_frames * h * w * 3 for h, w in shapes.values())
    if total > options.budget_mb * 2**20:
        sizes = ", ".join(f"{k} {h}×{w}" for k, (h, w) in shapes.items())
        raise ScorePolicyError(
            f"{root}: camera frames need {total / 2**20:.0f} MB in memory ({n_frames} frames; {sizes}), over "
            f"the {options.budget_mb:g} MB budget; raise {BUDGET_FLAG} or lower {SIZE_FLAG}"
        )


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise ScorePolicyError(PYAV_HINT) from exc
    return av


def decode_video(
    path: Path, size: tuple[int, int] | None, fps: float, wanted: np.ndarray | None = None, tol: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Frames of the video at `path` resized to `size` (height, width; None: as stored): (times in s,
    frames uint8). With `wanted` (times in s), only frames within `tol` of one of them are kept and decoding
    stops after the last. Frames without a timestamp are placed at their index / `fps`."""
    av = _av()
    resize: dict[str, Any] = (
        {} if size is None else {"height": size[0], "width": size[1], "interpolation": "AREA"}
    )
    targets = None if wanted is None or not len(wanted) else np.sort(np.asarray(wanted, dtype=np.float64))
    times: list[float] = []
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for n, frame in enumerate(container.decode(stream)):
                t = float(frame.pts * stream.time_base) if frame.pts is not None else n / fps
                if targets is not None:
                    if t > targets[-1] + tol:
                        break
                    i = int(np.searchsorted(targets, t))
                    near = min(abs(t - targets[j]) for j in (i - 1, i) if 0 <= j < len(targets))
                    if near > tol:
                        continue
                times.append(t)
                frames.append(frame.to_ndarray(format="rgb24", **resize))
    except ScorePolicyError:
        raise
    except Exception as exc:  # PyAV raises its own error family for corrupt or odd files
        raise ScorePolicyError(f"{path}: cannot decode video ({type(exc).__name__}: {exc})") from exc
    if not frames:
        raise ScorePolicyError(f"{path}: the video holds no frames at the episodes' times; restore the file")
    return np.asarray(times), np.stack(frames)


def nearest_frames(
    path: Path, stamps: np.ndarray, frames: np.ndarray, times: np.ndarray, tol: float
) -> np.ndarray:
    """The frame nearest to each wanted time (s); a one-line error when one is more than `tol` away."""
    order = np.argsort(stamps)
    sorted_stamps = stamps[order]
    right = (
        np.clip(np.searchsorted(sorted_stamps, times), 1, len(sorted_stamps) - 1) if len(stamps) > 1 else None
    )
    if right is None:
        nearest = np.zeros(len(times), dtype=np.int64)
    else:
        left = right - 1
        nearest = np.where(times - sorted_stamps[left] <= sorted_stamps[right] - times, left, right)
    gap = np.abs(sorted_stamps[nearest] - times)
    if np.any(gap > tol):
        i = int(np.argmax(gap))
        raise ScorePolicyError(
            f"{path}: no frame within {tol:.3f} s of t={float(times[i]):.3f} s (nearest {gap[i]:.3f} s off); "
            "the video is shorter than its episodes or its timestamps disagree"
        )
    return frames[order[nearest]]


def missing_video_message(meta: LeRobotMeta, key: str, shown: object) -> str:
    """The one-line message for a declared video stream whose files are absent."""
    return (
        f"{meta.root}: video stream '{key}' is declared in meta/info.json but its files are absent "
        f"(e.g. {shown}); restore the videos, or load without '{key}' (the other features load fine)"
    )


def decode_episode_videos(
    meta: LeRobotMeta,
    key: str,
    ends: np.ndarray,
    timestamps: np.ndarray | None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Every frame of video feature `key` for all episodes, aligned with the parquet rows (resized to `size`
    (height, width); None: as stored). Each video file is decoded once."""
    missing = meta.missing_videos().get(key)
    if missing is not None:
        shown = missing[0] if missing else f"(no video location for '{key}' in the episode metadata)"
        raise ScorePolicyError(missing_video_message(meta, key, shown))
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    tolerance = 0.5 / meta.fps + 1e-4
    wanted: dict[Path, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for ep, start, end in zip(meta.episodes, starts, ends):
        local = (
            np.asarray(timestamps[start:end], dtype=np.float64)
            if timestamps is not None
            else np.arange(end - start) / meta.fps
        )
        file, offset = ep.videos[key]
        wanted[file].append((int(start), local + offset))
    out: np.ndarray | None = None
    for file, parts in wanted.items():
        times_in_file = np.concatenate([times for _, times in parts])
        stamps, frames = decode_video(file, size, meta.fps, times_in_file, tolerance)
        if out is None:
            out = np.empty((int(ends[-1]), *frames.shape[1:]), dtype=np.uint8)
        elif frames.shape[1:] != out.shape[1:]:
            raise ScorePolicyError(
                f"{file}: frames of {frames.shape[1]}×{frames.shape[2]} px, but other files of '{key}' hold "
                f"{out.shape[1]}×{out.shape[2]}; set --dataset.cameras.width to resize them all alike"
            )
        for start, times in parts:
            out[start : start + len(times)] = nearest_frames(file, stamps, frames, times, tolerance)
    assert out is not None  # every episode names a file (checked by missing_videos)
    return out


def decode_image_column(values: list[Any], where: str, size: tuple[int, int] | None) -> np.ndarray:
    """Frames (N, H, W, 3) uint8 from a LeRobot image column (structs holding PNG/JPEG `bytes`, as LeRobot
    writes them), resized to `size` (height, width) with an area (box) filter."""
    from PIL import Image

    frames: list[np.ndarray] = []
    for i, value in enumerate(values):
        data = value.get("bytes") if isinstance(value, dict) else value
        if not isinstance(data, bytes | bytearray):
            raise ScorePolicyError(f"{where}: row {i} holds no encoded image bytes; restore the data file")
        try:
            with Image.open(io.BytesIO(data)) as image:
                rgb = image.convert("RGB")
                if size is not None and rgb.size != (size[1], size[0]):
                    rgb = rgb.resize((size[1], size[0]), Image.Resampling.BOX)
                frames.append(np.asarray(rgb))
        except OSError as exc:
            raise ScorePolicyError(
                f"{where}: row {i} is not a readable image ({exc}); restore the file"
            ) from exc
    if len({f.shape for f in frames}) > 1:
        raise ScorePolicyError(
            f"{where}: images of different sizes; set --dataset.cameras.width to resize them"
        )
    return np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8)


def read_cameras(
    meta: LeRobotMeta,
    keys: list[str],
    ends: np.ndarray,
    timestamps: np.ndarray | None,
    options: FrameOptions | None,
) -> dict[str, np.ndarray]:
    """Frames of camera features `keys` (video or image dtype) aligned with the parquet rows; `options` None
    keeps the stored size (budget: the default, estimated from the declared shapes)."""
    from scorepolicy.data.arrow import read_parquet

    opts = options or FrameOptions()
    declared = {k: camera_source_shape(meta.features[k]) for k in keys}
    sizes = {k: opts.size_for(hw) for k, hw in declared.items()} if options else declared
    check_budget(meta.root, int(ends[-1]), sizes, opts)
    missing = meta.missing_videos()
    for key in keys:
        if key in missing:  # refused before any decoding
            shown = (
                missing[key][0]
                if missing[key]
                else f"(no video location for '{key}' in the episode metadata)"
            )
            raise ScorePolicyError(missing_video_message(meta, key, shown))
    out: dict[str, np.ndarray] = {}
    for key in keys:
        size = sizes[key] if options else None
        if meta.features[key].get("dtype") == "video":
            out[key] = decode_episode_videos(meta, key, ends, timestamps, size)
            continue
        parts = []
        for path in dict.fromkeys(ep.data_file for ep in meta.episodes):
            column = read_parquet(path, columns=[key]).column(key).to_pylist()
            parts.append(decode_image_column(column, f"{path}: column '{key}'", size))
        out[key] = np.concatenate(parts)
    return out
