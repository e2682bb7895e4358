"""Read LeRobot datasets (format v3.0 and v2.1) into `Episodes`.

v3.0: `meta/info.json`, `meta/stats.json`, `meta/tasks.parquet`, `meta/episodes/chunk-*/file-*.parquet`,
`data/chunk-*/file-*.parquet` (many episodes per file), `videos/<key>/chunk-*/file-*.mp4`.
v2.1: `meta/info.json`, `meta/episodes.jsonl`, `meta/tasks.jsonl`, `meta/episodes_stats.jsonl`,
`data/chunk-*/episode_*.parquet` (one episode per file), `videos/chunk-*/<key>/episode_*.mp4`.

Vector features become float32 (N, d) arrays under their LeRobot names; the per-frame columns
(`timestamp`, `frame_index`, `episode_index`, `index`, `task_index`) stay 1-D. Task strings go to
`attrs["tasks"]` (index = task id). Only JSON and parquet are parsed: nothing from the data is executed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scorepolicy.core.episodes import Episodes
from scorepolicy.data.arrow import column_to_numpy, parquet_columns, read_parquet
from scorepolicy.data.lerobot_video import FrameOptions
from scorepolicy.errors import ScorePolicyError

FRAME_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
"""Per-frame bookkeeping columns every LeRobot dataset has; kept 1-D in `Episodes`."""
SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
CAMERA_DTYPES = ("video", "image")
"""LeRobot feature dtypes holding camera frames (decoded by `lerobot_video`)."""
VALIDATE_HINT = "run `scorepolicy data validate` on it for the full report"


@dataclass
class EpisodeMeta:
    """What the metadata says about one episode."""

    index: int
    """episode_index."""
    length: int
    """Frames in the episode."""
    tasks: list[str]
    """Task strings of the episode."""
    data_file: Path
    """Parquet file holding its frames."""
    from_index: int | None = None
    """v3.0: global index of its first frame (dataset_from_index)."""
    videos: dict[str, tuple[Path, float]] = field(default_factory=dict)
    """Video key -> (file, timestamp of the episode's first frame in that file)."""


@dataclass
class LeRobotMeta:
    """The metadata of a LeRobot dataset directory."""

    root: Path
    """Dataset directory."""
    version: str
    """codebase_version from meta/info.json."""
    info: dict[str, Any]
    """meta/info.json as read."""
    tasks: list[str]
    """Task strings, index = task_index."""
    episodes: list[EpisodeMeta]
    """Episodes in dataset order."""

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return dict(self.info["features"])

    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]

    @property
    def camera_keys(self) -> list[str]:
        """Camera features: video streams and per-frame images stored in the parquet files."""
        return [k for k, f in self.features.items() if f.get("dtype") in CAMERA_DTYPES]

    @property
    def vector_keys(self) -> list[str]:
        """Numeric features stored in the parquet files (not images, videos or strings)."""
        return [k for k, f in self.features.items() if is_numeric_dtype(f.get("dtype"))]

    def missing_videos(self) -> dict[str, list[Path]]:
        """Video key -> its absent files (empty dict when every declared video file exists)."""
        out: dict[str, list[Path]] = {}
        for key in self.video_keys:
            files = {ep.videos[key][0] for ep in self.episodes if key in ep.videos}
            missing = sorted(f for f in files if not f.is_file())
            if missing or not files:
                out[key] = missing
        return out


def is_numeric_dtype(dtype: object) -> bool:
    """Whether a LeRobot feature dtype is a number type numpy understands (float32, int64, bool, ...)."""
    if not isinstance(dtype, str) or dtype in ("video", "image", "string"):
        return False
    try:
        return np.dtype(dtype).kind in "biuf"
    except TypeError:
        return False


def is_lerobot_dir(path: Path) -> bool:
    """True when `path` looks like a LeRobot dataset (it has meta/info.json)."""
    return (path / "meta" / "info.json").is_file()


def read_json_file(path: Path) -> Any:
    """JSON with a one-line error naming the file."""
    if not path.is_file():
        raise ScorePolicyError(f"{path}: file not found; a LeRobot dataset needs it (restore it)")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ScorePolicyError(f"{path}: invalid JSON ({exc}); restore or re-create the file") from exc


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """JSON lines (one object per line) with errors naming the file and line."""
    if not path.is_file():
        raise ScorePolicyError(f"{path}: file not found; a LeRobot v2.1 dataset needs it (restore it)")
    rows = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScorePolicyError(f"{path}: unreadable ({exc}); restore the file") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ScorePolicyError(f"{path}: line {n} is not JSON ({exc}); fix or restore the file") from exc
        if not isinstance(row, dict):
            raise ScorePolicyError(f"{path}: line {n} is not a JSON object; fix or restore the file")
        rows.append(row)
    return rows


def read_info(root: Path) -> dict[str, Any]:
    """meta/info.json, checked for the fields every reader needs."""
    path = root / "meta" / "info.json"
    info = read_json_file(path)
    if not isinstance(info, dict):
        raise ScorePolicyError(f"{path}: expected a JSON object; restore the file")
    version = info.get("codebase_version")
    if version not in SUPPORTED_VERSIONS:
        raise ScorePolicyError(
            f"{path}: codebase_version {version!r} is not supported (supported: {', '.join(SUPPORTED_VERSIONS)})"
        )
    features = info.get("features")
    if not isinstance(features, dict) or not all(isinstance(f, dict) for f in features.values()):
        raise ScorePolicyError(f"{path}: field 'features' must map feature names to objects; restore it")
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not fps > 0:
        raise ScorePolicyError(f"{path}: field 'fps' must be a positive number, got {fps!r}")
    if not isinstance(info.get("data_path"), str):
        raise ScorePolicyError(f"{path}: field 'data_path' must be a path template string; restore it")
    if not isinstance(info.get("video_path"), str | None):
        raise ScorePolicyError(f"{path}: field 'video_path' must be a path template string or null")
    chunks = info.get("chunks_size", 1000)
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks <= 0:
        raise ScorePolicyError(f"{path}: field 'chunks_size' must be a positive integer, got {chunks!r}")
    return info


def _int_field(row: dict[str, Any], key: str, where: str) -> int:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ScorePolicyError(f"{where}: field '{key}' must be an integer, got {value!r}")
    return int(value)


def _format_path(root: Path, template: object, where: str, **kwargs: Any) -> Path:
    """root / template.format(**kwargs), with a one-line error for a bad template."""
    try:
        return root / str(template).format(**kwargs)
    except (KeyError, IndexError, ValueError) as exc:
        raise ScorePolicyError(f"{where}: path template {template!r} cannot be filled ({exc})") from exc


def _tasks_v3(root: Path) -> list[str]:
    path = root / "meta" / "tasks.parquet"
    table = read_parquet(path)
    if "task_index" not in table.column_names:
        raise ScorePolicyError(f"{path}: column 'task_index' missing; restore meta/tasks.parquet")
    names = [c for c in ("task", "__index_level_0__") if c in table.column_names]
    if not names:
        raise ScorePolicyError(f"{path}: no 'task' column with the task strings; restore meta/tasks.parquet")
    ids = column_to_numpy(table.column("task_index"), f"{path}: task_index")
    strings = table.column(names[0]).to_pylist()
    return _ordered_tasks([(int(i), s) for i, s in zip(ids, strings)], path)


def _ordered_tasks(pairs: list[tuple[int, object]], path: Path) -> list[str]:
    """Task strings ordered by task_index, which must be 0..n-1."""
    by_id = dict(pairs)
    if sorted(by_id) != list(range(len(pairs))) or not all(isinstance(s, str) for s in by_id.values()):
        raise ScorePolicyError(f"{path}: task indices must be 0..{len(pairs) - 1} with one string each")
    return [str(by_id[i]) for i in range(len(pairs))]


def _tasks_v2(root: Path) -> list[str]:
    path = root / "meta" / "tasks.jsonl"
    rows = read_jsonl(path)
    pairs = [(_int_field(r, "task_index", str(path)), r.get("task")) for r in rows]
    return _ordered_tasks(pairs, path)


def _episodes_v3(root: Path, info: dict[str, Any]) -> list[EpisodeMeta]:
    files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if not files:
        raise ScorePolicyError(f"{root}/meta/episodes: no chunk-*/file-*.parquet; restore the episode index")
    video_keys = [k for k, f in info["features"].items() if f.get("dtype") == "video"]
    episodes = []
    for path in files:
        wanted = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index"]
        schema_names = parquet_columns(path)
        extra = [c for c in schema_names if c.startswith("videos/") or c == "dataset_from_index"]
        table = read_parquet(path, columns=wanted + extra)
        for row in table.to_pylist():
            episodes.append(_episode_v3(root, info, row, video_keys, str(path)))
    return sorted(episodes, key=lambda e: e.index)


def _episode_v3(
    root: Path, info: dict[str, Any], row: dict[str, Any], video_keys: list[str], where: str
) -> EpisodeMeta:
    chunk, file = _int_field(row, "data/chunk_index", where), _int_field(row, "data/file_index", where)
    data_file = _format_path(root, info["data_path"], where, chunk_index=chunk, file_index=file)
    videos = {}
    for key in video_keys:
        if f"videos/{key}/chunk_index" in row and info.get("video_path"):
            vchunk = _int_field(row, f"videos/{key}/chunk_index", where)
            vfile = _int_field(row, f"videos/{key}/file_index", where)
            vpath = _format_path(
                root, info["video_path"], where, video_key=key, chunk_index=vchunk, file_index=vfile
            )
            videos[key] = (vpath, float(row.get(f"videos/{key}/from_timestamp") or 0.0))
    tasks = row.get("tasks") or []
    return EpisodeMeta(
        index=_int_field(row, "episode_index", where),
        length=_int_field(row, "length", where),
        tasks=[str(t) for t in tasks],
        data_file=data_file,
        from_index=row.get("dataset_from_index"),
        videos=videos,
    )


def _episodes_v2(root: Path, info: dict[str, Any]) -> list[EpisodeMeta]:
    path = root / "meta" / "episodes.jsonl"
    chunks_size = int(info.get("chunks_size", 1000))
    video_keys = [k for k, f in info["features"].items() if f.get("dtype") == "video"]
    episodes = []
    for row in read_jsonl(path):
        index = _int_field(row, "episode_index", str(path))
        chunk = index // chunks_size
        fmt = {"episode_chunk": chunk, "episode_index": index}
        videos = {
            key: (_format_path(root, info["video_path"], str(path), video_key=key, **fmt), 0.0)
            for key in video_keys
            if info.get("video_path")
        }
        tasks = row.get("tasks") or []
        episodes.append(
            EpisodeMeta(
                index=index,
                length=_int_field(row, "length", str(path)),
                tasks=[str(t) for t in tasks],
                data_file=_format_path(root, info["data_path"], str(path), **fmt),
                videos=videos,
            )
        )
    if not episodes:
        raise ScorePolicyError(f"{path}: no episodes listed; restore meta/episodes.jsonl")
    return sorted(episodes, key=lambda e: e.index)


def read_lerobot_meta(path: str | Path) -> LeRobotMeta:
    """The metadata of a LeRobot dataset: info, tasks, and every episode's length, file and videos."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ScorePolicyError(f"{root}: LeRobot dataset directory not found; check the path")
    info = read_info(root)
    version = str(info["codebase_version"])
    if version == "v3.0":
        tasks, episodes = _tasks_v3(root), _episodes_v3(root, info)
    else:
        tasks, episodes = _tasks_v2(root), _episodes_v2(root, info)
    return LeRobotMeta(root=root, version=version, info=info, tasks=tasks, episodes=episodes)


def _select_columns(
    meta: LeRobotMeta, keys: Sequence[str] | None, cameras: bool = False
) -> tuple[list[str], list[str]]:
    """(parquet columns, camera keys) to load; by default every numeric feature, and every camera feature
    only with `cameras`."""
    features = meta.features
    if keys is None:
        return meta.vector_keys, (meta.camera_keys if cameras else [])
    unknown = [k for k in keys if k not in features]
    if unknown:
        raise ScorePolicyError(
            f"{meta.root}/meta/info.json: feature '{unknown[0]}' not declared; "
            f"available features: {', '.join(features)}"
        )
    unsupported = [k for k in keys if k not in meta.camera_keys and k not in meta.vector_keys]
    if unsupported:
        dtype = features[unsupported[0]].get("dtype")
        raise ScorePolicyError(
            f"{meta.root}: feature '{unsupported[0]}' has dtype {dtype!r}, which this reader does not load; "
            "leave it out of the requested keys"
        )
    columns = [k for k in keys if k not in meta.camera_keys]
    for col in ("episode_index", "frame_index", "timestamp", "task_index"):
        if col in features and col not in columns:
            columns.append(col)
    named = [k for k in keys if k in meta.camera_keys]
    return columns, list(dict.fromkeys(named + (meta.camera_keys if cameras else [])))


def _feature_array(meta: LeRobotMeta, key: str, arr: np.ndarray, where: str) -> np.ndarray:
    """A column as the Episodes convention wants it, checked against the declared shape."""
    feature = meta.features[key]
    shape = tuple(int(s) for s in feature.get("shape") or (1,))
    if key in FRAME_COLUMNS and shape == (1,):
        expected: tuple[int, ...] = ()
    else:
        expected = shape
    if arr.ndim == 1 and expected == (1,):
        arr = arr[:, None]
    if arr.ndim == 2 and arr.shape[1] == 1 and expected == ():
        arr = arr[:, 0]
    if arr.shape[1:] != expected:
        raise ScorePolicyError(
            f"{where}: shape {arr.shape[1:]} per frame but meta/info.json declares {list(shape)}; "
            f"{VALIDATE_HINT}"
        )
    return arr.astype(np.float32, copy=False) if arr.dtype.kind == "f" and key != "timestamp" else arr


def _read_data_files(meta: LeRobotMeta, columns: list[str]) -> dict[str, np.ndarray]:
    """The requested columns of every data file, concatenated in episode order."""
    files = list(dict.fromkeys(ep.data_file for ep in meta.episodes))
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    for path in files:
        table = read_parquet(path, columns=columns)
        for col in columns:
            where = f"{path}: column '{col}'"
            parts[col].append(_feature_array(meta, col, column_to_numpy(table.column(col), where), where))
    out = {}
    for col, arrays in parts.items():
        try:
            out[col] = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        except ValueError as exc:
            raise ScorePolicyError(f"{meta.root}/data: column '{col}' differs between files ({exc})") from exc
    return out


def _episode_ends(meta: LeRobotMeta, data: dict[str, np.ndarray], n_rows: int) -> np.ndarray:
    """Exclusive episode ends from the episode_index column, checked against the metadata."""
    lengths = np.array([ep.length for ep in meta.episodes], dtype=np.int64)
    if "episode_index" not in data:
        if lengths.sum() != n_rows:
            raise ScorePolicyError(
                f"{meta.root}: episodes list {lengths.sum()} frames but data files hold {n_rows}; {VALIDATE_HINT}"
            )
        return np.cumsum(lengths)
    ep_idx = np.asarray(data["episode_index"])
    starts = np.concatenate([[0], np.flatnonzero(np.diff(ep_idx)) + 1]) if n_rows else np.zeros(0, int)
    seg_ids = ep_idx[starts].tolist()
    seg_lengths = np.diff(np.append(starts, n_rows))
    meta_ids = [ep.index for ep in meta.episodes]
    if seg_ids != meta_ids or not np.array_equal(seg_lengths, lengths):
        detail = _first_episode_mismatch(meta, seg_ids, seg_lengths.tolist())
        raise ScorePolicyError(
            f"{meta.root}: data files disagree with the episode metadata ({detail}); {VALIDATE_HINT}"
        )
    return np.cumsum(lengths)


def _first_episode_mismatch(meta: LeRobotMeta, seg_ids: list[int], seg_lengths: list[int]) -> str:
    """A short description of the first episode whose frames do not match its metadata."""
    data = dict(zip(seg_ids, seg_lengths))
    if len(data) != len(seg_ids):
        return "the frames of an episode are not contiguous"
    for ep in meta.episodes:
        if ep.index not in data:
            return f"episode {ep.index} has no frames in the data files"
        if data[ep.index] != ep.length:
            return f"episode {ep.index} has {data[ep.index]} frames but its metadata says {ep.length}"
    extra = sorted(set(data) - {ep.index for ep in meta.episodes})
    return f"episode {extra[0]} is in the data but not in the metadata" if extra else "episode order differs"


def _task_index(meta: LeRobotMeta, data: dict[str, np.ndarray], ends: np.ndarray) -> np.ndarray:
    """Per-frame task ids (int64): the task_index column, or each episode's first task."""
    if "task_index" in data:
        task_index = np.asarray(data["task_index"]).astype(np.int64, copy=False)
        bad = (task_index < 0) | (task_index >= len(meta.tasks))
        if bad.any():
            raise ScorePolicyError(
                f"{meta.root}: task_index {int(task_index[np.argmax(bad)])} at frame {int(np.argmax(bad))} "
                f"is not one of the {len(meta.tasks)} tasks in the task table; {VALIDATE_HINT}"
            )
        return task_index
    lookup = {t: i for i, t in enumerate(meta.tasks)}
    ids = [lookup.get(ep.tasks[0], 0) if ep.tasks else 0 for ep in meta.episodes]
    return np.repeat(np.array(ids, dtype=np.int64), np.diff(np.concatenate([[0], ends])))


def _check_finite(meta: LeRobotMeta, data: dict[str, np.ndarray], ends: np.ndarray) -> None:
    for key, arr in data.items():
        if arr.dtype.kind != "f":
            continue
        bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            episode = meta.episodes[int(np.searchsorted(ends, row, side="right"))].index
            raise ScorePolicyError(
                f"{meta.root}: feature '{key}' holds NaN/inf at frame {row} (episode {episode}); "
                f"clean or drop that episode ({VALIDATE_HINT})"
            )


def read_lerobot(
    path: str | Path,
    keys: Sequence[str] | None = None,
    *,
    check_finite: bool = True,
    images: bool = False,
    frames: FrameOptions | None = None,
) -> Episodes:
    """Read a LeRobot v3.0 or v2.1 dataset into `Episodes`.

    `keys` selects features (default: every numeric feature). Camera features (video, decoded with PyAV,
    and image) come when named in `keys` or, all of them, with `images`: uint8 (N, H, W, 3) frames aligned
    with the rows, resized by `frames` (default with `images`: 96 px high, aspect kept; named keys without
    `frames`: as stored) within its memory budget. Frames keep the dataset's order; `attrs` holds fps,
    tasks, feature names and versions.
    """
    meta = read_lerobot_meta(path)
    columns, camera_keys = _select_columns(meta, keys, images)
    if camera_keys and "timestamp" in meta.features and "timestamp" not in columns:
        columns.append("timestamp")
    data = _read_data_files(meta, columns)
    n_rows = len(next(iter(data.values()))) if data else sum(ep.length for ep in meta.episodes)
    ends = _episode_ends(meta, data, n_rows)
    data["task_index"] = _task_index(meta, data, ends)
    if check_finite:
        _check_finite(meta, data, ends)
    if camera_keys:
        from scorepolicy.data.lerobot_video import read_cameras

        options = frames if frames is not None or not images else FrameOptions()
        data.update(read_cameras(meta, camera_keys, ends, data.get("timestamp"), options))
    return Episodes(data=data, episode_ends=ends, source=str(meta.root), attrs=lerobot_attrs(meta))


def lerobot_attrs(meta: LeRobotMeta) -> dict[str, object]:
    """JSON-ready attributes of a dataset read from LeRobot (fps, tasks, names, robot, versions)."""
    features = meta.features
    missing = meta.missing_videos()
    return {
        "format": "lerobot",
        "codebase_version": meta.version,
        "fps": meta.info["fps"],
        "tasks": list(meta.tasks),
        "robot_type": meta.info.get("robot_type"),
        "feature_names": {k: f.get("names") for k, f in features.items() if is_numeric_dtype(f.get("dtype"))},
        "video_keys": meta.video_keys,
        "camera_keys": meta.camera_keys,
        "missing_video_keys": sorted(missing),
    }
