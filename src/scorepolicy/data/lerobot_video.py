"""Decode the video streams of a LeRobot dataset (optional extra: PyAV, `pip install 'scorepolicy[video]'`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scorepolicy.errors import ScorePolicyError

if TYPE_CHECKING:
    from scorepolicy.data.lerobot import LeRobotMeta

PYAV_HINT = "decoding video features needs PyAV: pip install 'scorepolicy[video]' (or pip install av)"


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise ScorePolicyError(PYAV_HINT) from exc
    return av


def decode_frames(path: Path, times: np.ndarray, tolerance: float) -> np.ndarray:
    """RGB frames (len(times), H, W, 3) uint8 of the video at `path`, nearest frame to each time (s)."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            pts: list[float] = []
            frames: list[np.ndarray] = []
            last = float(np.max(times)) + tolerance if len(times) else 0.0
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base) if frame.pts is not None else float(len(pts))
                if t < float(np.min(times)) - tolerance:
                    continue
                pts.append(t)
                frames.append(frame.to_ndarray(format="rgb24"))
                if t > last:
                    break
    except ScorePolicyError:
        raise
    except Exception as exc:  # PyAV raises its own error family for corrupt or odd files
        raise ScorePolicyError(f"{path}: cannot decode video ({type(exc).__name__}: {exc})") from exc
    if not frames:
        raise ScorePolicyError(f"{path}: no frames near t={float(times[0]):.3f} s; the video is too short")
    stamps = np.asarray(pts)
    nearest = np.abs(stamps[None, :] - times[:, None]).argmin(axis=1)
    gap = np.abs(stamps[nearest] - times)
    if np.any(gap > tolerance):
        i = int(np.argmax(gap))
        raise ScorePolicyError(
            f"{path}: no frame within {tolerance:.3f} s of t={float(times[i]):.3f} s (nearest {gap[i]:.3f} s off)"
        )
    return np.stack([frames[i] for i in nearest])


def decode_episode_videos(
    meta: LeRobotMeta, key: str, ends: np.ndarray, timestamps: np.ndarray | None
) -> np.ndarray:
    """Every frame of video feature `key` for all episodes, aligned with the parquet frames."""
    missing = meta.missing_videos().get(key)
    if missing is not None:
        shown = missing[0] if missing else f"(no video location for '{key}' in the episode metadata)"
        raise ScorePolicyError(
            f"{meta.root}: video stream '{key}' is declared in meta/info.json but its files are absent "
            f"(e.g. {shown}); restore the videos, or load without '{key}' (the other features load fine)"
        )
    starts = np.concatenate([[0], ends[:-1]])
    tolerance = 0.5 / meta.fps + 1e-4
    parts = []
    for ep, start, end in zip(meta.episodes, starts, ends):
        if timestamps is not None:
            local = np.asarray(timestamps[start:end], dtype=np.float64)
        else:
            local = np.arange(end - start) / meta.fps
        file, offset = ep.videos[key]
        parts.append(decode_frames(file, local + offset, tolerance))
    return np.concatenate(parts)
