"""Write `Episodes` as a LeRobot v3.0 dataset (parquet data and metadata, no videos), atomically.

The layout, column names, dtypes and info.json fields follow what LeRobot's own loader reads:
`data/chunk-000/file-000.parquet` (many episodes per file, one row group per episode, vectors as
fixed-size lists), `meta/episodes/chunk-000/file-000.parquet` (per-episode index and statistics),
`meta/tasks.parquet` (task strings as the pandas index `task`), `meta/stats.json` and `meta/info.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from scorepolicy.core.episodes import Episodes
from scorepolicy.data.formats import check_finite
from scorepolicy.data.lerobot import FRAME_COLUMNS
from scorepolicy.data.lerobot_stats import QUANTILES, Stats, aggregate, feature_stats, stats_to_json
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import atomic_directory, atomic_write_json

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
DEFAULT_TASK = "unspecified task"
"""Task string given to every episode of data that records no task."""


def _fps(episodes: Episodes, fps: float | None) -> float | int:
    value = fps if fps is not None else episodes.attrs.get("fps")
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ScorePolicyError(
            f"{episodes.source or 'episodes'}: the frame rate is unknown; pass --fps (e.g. --fps 10 for Push-T)"
        )
    return int(value) if float(value).is_integer() else float(value)


def _tasks(episodes: Episodes) -> tuple[list[str], np.ndarray]:
    """Task strings and per-frame task ids (zeros and one default task when the data has none)."""
    tasks = episodes.attrs.get("tasks")
    task_index = episodes.data.get("task_index")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        tasks = [str(episodes.attrs.get("task") or DEFAULT_TASK)]
        task_index = None
    ids = np.zeros(episodes.n_steps, np.int64) if task_index is None else np.asarray(task_index, np.int64)
    if ids.shape != (episodes.n_steps,) or ids.min() < 0 or ids.max() >= len(tasks):
        raise ScorePolicyError(
            f"{episodes.source}: 'task_index' must be (N,) ids into the {len(tasks)} task strings in attrs['tasks']"
        )
    return list(tasks), ids


def _feature_arrays(episodes: Episodes) -> dict[str, np.ndarray]:
    """Non-bookkeeping features as (N,) scalars (also for one-element vectors) or (N, d) vectors (higher
    ranks are flattened)."""
    out = {}
    for key, arr in episodes.data.items():
        if key in FRAME_COLUMNS:
            continue
        if arr.dtype.kind not in "biuf":
            raise ScorePolicyError(
                f"{episodes.source}: feature '{key}' has dtype {arr.dtype}; only numbers are written"
            )
        if arr.ndim > 2:
            arr = arr.reshape(len(arr), -1)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]  # shape [1] is a scalar column in LeRobot (its datasets schema says Value)
        out[key] = arr.astype(np.float32) if arr.dtype.kind == "f" else arr
    return out


def _frame_columns(episodes: Episodes, fps: float, task_index: np.ndarray) -> dict[str, np.ndarray]:
    lengths = np.diff(np.concatenate([[0], episodes.episode_ends]))
    frame_index = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])
    timestamp = episodes.data.get("timestamp")
    if timestamp is None or np.shape(timestamp) != (episodes.n_steps,):
        timestamp = frame_index / fps
    return {
        "timestamp": np.asarray(timestamp, dtype=np.float32),
        "frame_index": frame_index,
        "episode_index": np.repeat(np.arange(len(lengths), dtype=np.int64), lengths),
        "index": np.arange(episodes.n_steps, dtype=np.int64),
        "task_index": task_index,
    }


def _feature_info(arr: np.ndarray, names: object) -> dict[str, Any]:
    shape = [1] if arr.ndim == 1 else [int(arr.shape[1])]
    if not (isinstance(names, list) and len(names) == shape[0]):
        names = None
    return {"dtype": str(arr.dtype), "shape": shape, "names": names}


def _hf_features(columns: dict[str, np.ndarray]) -> dict[str, Any]:
    """The `huggingface` schema metadata the datasets library writes (Value / fixed-length List)."""
    out: dict[str, Any] = {}
    for key, arr in columns.items():
        value = {"dtype": str(arr.dtype), "_type": "Value"}
        out[key] = (
            value if arr.ndim == 1 else {"feature": value, "length": int(arr.shape[1]), "_type": "List"}
        )
    return {"info": {"features": out}}


def _arrow_column(arr: np.ndarray) -> Any:
    import pyarrow as pa

    if arr.ndim == 1:
        return pa.array(arr)
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(arr).ravel()), int(arr.shape[1]))


def _write_data_file(path: Path, columns: dict[str, np.ndarray], bounds: list[tuple[int, int]]) -> None:
    """Rows bounds[0][0]..bounds[-1][1] of every column, one row group per episode."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    lo, hi = bounds[0][0], bounds[-1][1]
    table = pa.table({k: _arrow_column(v[lo:hi]) for k, v in columns.items()})
    table = table.replace_schema_metadata({"huggingface": json.dumps(_hf_features(columns))})
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(str(path), table.schema, compression="snappy") as writer:
        for start, end in bounds:
            writer.write_table(table.slice(start - lo, end - start))


def _file_plan(episodes: Episodes, columns: dict[str, np.ndarray], file_mb: float) -> list[int]:
    """File number of each episode: episodes fill a data file up to about `file_mb` megabytes."""
    row_bytes = sum(arr[:1].nbytes for arr in columns.values())
    lengths = np.diff(np.concatenate([[0], episodes.episode_ends]))
    plan, current, size = [], 0, 0.0
    for n in lengths:
        episode_mb = n * row_bytes / 2**20
        if size > 0 and size + episode_mb > file_mb:
            current, size = current + 1, 0.0
        plan.append(current)
        size += episode_mb
    return plan


def _stats_columns(stats: dict[str, Stats]) -> dict[str, Any]:
    """`stats/<feature>/<stat>` entries of one episode row (lists, ints for int features' min/max)."""
    row: dict[str, Any] = {}
    for key, s in stats.items():
        for name, value in s.items():
            row[f"stats/{key}/{name}"] = np.asarray(value).tolist()
    return row


def _episode_table(rows: list[dict[str, Any]], columns: dict[str, np.ndarray]) -> Any:
    """The per-episode metadata table with explicit types (int64 indices, double statistics)."""
    import pyarrow as pa

    types: dict[str, Any] = {
        "episode_index": pa.int64(),
        "tasks": pa.list_(pa.string()),
        "length": pa.int64(),
        "data/chunk_index": pa.int64(),
        "data/file_index": pa.int64(),
        "dataset_from_index": pa.int64(),
        "dataset_to_index": pa.int64(),
    }
    for key, arr in columns.items():
        integer = arr.dtype.kind in "biu"
        for name in ("min", "max", "mean", "std", "count", *QUANTILES):
            exact = name == "count" or (integer and name in ("min", "max"))
            types[f"stats/{key}/{name}"] = pa.list_(pa.int64() if exact else pa.float64())
    types["meta/episodes/chunk_index"] = pa.int64()
    types["meta/episodes/file_index"] = pa.int64()
    return pa.table({k: pa.array([r[k] for r in rows], type=t) for k, t in types.items()})


def _tasks_table(tasks: list[str]) -> Any:
    """meta/tasks.parquet: task_index plus the task strings stored as the pandas index named 'task'."""
    import pyarrow as pa

    table = pa.table(
        {"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())}
    )
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})


def _episode_rows(
    episodes: Episodes, columns: dict[str, np.ndarray], tasks: list[str], plan: list[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Stats]]]:
    rows, all_stats = [], []
    for i in range(episodes.n_episodes):
        part = episodes.episode_slice(i)
        stats = {key: feature_stats(arr[part]) for key, arr in columns.items()}
        ids = dict.fromkeys(columns["task_index"][part].tolist())
        row = {
            "episode_index": i,
            "tasks": [tasks[t] for t in ids],
            "length": part.stop - part.start,
            "data/chunk_index": plan[i] // CHUNKS_SIZE,
            "data/file_index": plan[i] % CHUNKS_SIZE,
            "dataset_from_index": part.start,
            "dataset_to_index": part.stop,
            **_stats_columns(stats),
            "meta/episodes/chunk_index": 0,
            "meta/episodes/file_index": 0,
        }
        rows.append(row)
        all_stats.append(stats)
    return rows, all_stats


def _info(
    episodes: Episodes, columns: dict[str, np.ndarray], tasks: list[str], fps: float, robot_type: str | None
) -> dict[str, Any]:
    names = episodes.attrs.get("feature_names")
    names = names if isinstance(names, dict) else {}
    return {
        "codebase_version": "v3.0",
        "robot_type": robot_type if robot_type is not None else episodes.attrs.get("robot_type"),
        "total_episodes": episodes.n_episodes,
        "total_frames": episodes.n_steps,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_MB,
        "video_files_size_in_mb": 200,
        "fps": fps,
        "splits": {"train": f"0:{episodes.n_episodes}"},
        "data_path": DATA_PATH,
        "video_path": None,
        "features": {k: _feature_info(v, names.get(k)) for k, v in columns.items()},
    }


def _write_tree(episodes: Episodes, root: Path, fps: float, robot_type: str | None, file_mb: float) -> None:
    import pyarrow.parquet as pq

    tasks, task_index = _tasks(episodes)
    columns = {**_feature_arrays(episodes), **_frame_columns(episodes, fps, task_index)}
    plan = _file_plan(episodes, columns, file_mb)
    bounds = list(zip(episodes.episode_starts.tolist(), episodes.episode_ends.tolist()))
    for number in sorted(set(plan)):
        path = root / DATA_PATH.format(chunk_index=number // CHUNKS_SIZE, file_index=number % CHUNKS_SIZE)
        _write_data_file(path, columns, [b for b, p in zip(bounds, plan) if p == number])
    rows, per_episode = _episode_rows(episodes, columns, tasks, plan)
    episodes_path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(_episode_table(rows, columns), str(episodes_path), compression="snappy")
    pq.write_table(_tasks_table(tasks), str(root / "meta" / "tasks.parquet"))
    stats = {key: aggregate([s[key] for s in per_episode]) for key in columns}
    atomic_write_json(root / "meta" / "stats.json", stats_to_json(stats))
    atomic_write_json(root / "meta" / "info.json", _info(episodes, columns, tasks, fps, robot_type))


def write_lerobot_v3(
    episodes: Episodes,
    path: str | Path,
    *,
    fps: float | None = None,
    robot_type: str | None = None,
    overwrite: bool = False,
    data_file_mb: float = DATA_FILE_MB,
) -> Path:
    """Write `episodes` as a LeRobot v3.0 dataset directory at `path` (temp dir, then rename).

    Every numeric key becomes a feature (ranks above 2 are flattened to vectors); episode and frame
    indices are renumbered from 0; tasks come from `attrs["tasks"]` + `data["task_index"]`.
    """
    target = Path(path).expanduser()
    if target.exists() and not overwrite:
        raise ScorePolicyError(f"{target}: already exists; choose another --out or pass --overwrite")
    rate = _fps(episodes, fps)
    check_finite(episodes)
    with atomic_directory(target) as tmp:
        tmp.mkdir()
        _write_tree(episodes, tmp, rate, robot_type, data_file_mb)
    return target
