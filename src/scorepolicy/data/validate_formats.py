"""The format-specific halves of validation: LeRobot, replay zarr and robomimic HDF5."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scorepolicy.data.arrow import column_to_numpy, parquet_columns, read_parquet
from scorepolicy.data.lerobot import (
    FRAME_COLUMNS,
    EpisodeMeta,
    LeRobotMeta,
    read_json_file,
    read_jsonl,
    read_lerobot_meta,
)
from scorepolicy.data.validate import Problem, check_episode, compare_stats
from scorepolicy.errors import ScorePolicyError


def _declared_shape(meta: LeRobotMeta, key: str) -> tuple[int, ...]:
    shape = tuple(int(s) for s in meta.features[key].get("shape") or (1,))
    return () if shape == (1,) else shape


def _file_columns(meta: LeRobotMeta, path: Path) -> tuple[dict[str, np.ndarray], list[Problem]]:
    """The numeric columns of one data file that are readable and match info.json, plus the problems."""
    problems: list[Problem] = []
    try:
        available = parquet_columns(path)
    except ScorePolicyError as exc:
        return {}, [Problem("", str(exc))]
    out: dict[str, np.ndarray] = {}
    for key in meta.vector_keys:
        if key not in available:
            problems.append(Problem(str(path), "column missing (declared in meta/info.json)", field=key))
            continue
        try:
            arr = column_to_numpy(read_parquet(path, [key]).column(key), f"{path}: column '{key}'")
        except ScorePolicyError as exc:
            problems.append(Problem("", str(exc)))
            continue
        declared = str(meta.features[key].get("dtype"))
        if np.dtype(declared).kind != arr.dtype.kind:
            problems.append(
                Problem(str(path), f"dtype {arr.dtype} but meta/info.json declares {declared}", field=key)
            )
        shape = arr.shape[1:] if not (arr.ndim == 2 and arr.shape[1] == 1) else ()
        if shape != _declared_shape(meta, key):
            want = list(meta.features[key].get("shape") or [1])
            problems.append(
                Problem(
                    str(path),
                    f"shape {list(arr.shape[1:]) or [1]} per frame but meta/info.json declares {want}",
                    field=key,
                )
            )
            continue
        out[key] = arr
    return out, problems


def _segments(ep_idx: np.ndarray) -> dict[int, list[tuple[int, int]]]:
    """Episode index -> list of (start, end) row ranges where that episode's rows sit."""
    starts = np.concatenate([[0], np.flatnonzero(np.diff(ep_idx)) + 1]) if len(ep_idx) else np.zeros(0, int)
    ends = np.append(starts[1:], len(ep_idx))
    out: dict[int, list[tuple[int, int]]] = {}
    for s, e in zip(starts.tolist(), ends.tolist()):
        out.setdefault(int(ep_idx[s]), []).append((s, e))
    return out


def _episode_stats(meta: LeRobotMeta) -> dict[int, dict[str, dict[str, np.ndarray]]]:
    """Recorded per-episode statistics (v3.0: stats/ columns; v2.1: episodes_stats.jsonl), or {}."""
    out: dict[int, dict[str, dict[str, np.ndarray]]] = {}
    if meta.version == "v3.0":
        for path in sorted((meta.root / "meta" / "episodes").glob("*/*.parquet")):
            cols = [c for c in parquet_columns(path) if c.startswith("stats/")]
            table = read_parquet(path, ["episode_index", *cols])
            for row in table.to_pylist():
                stats: dict[str, dict[str, Any]] = {}
                for col in cols:
                    _, key, name = col.split("/", 2) if col.count("/") >= 2 else (col, col, col)
                    stats.setdefault(key, {})[name] = row[col]
                out[int(row["episode_index"])] = stats
    elif (meta.root / "meta" / "episodes_stats.jsonl").is_file():
        for row in read_jsonl(meta.root / "meta" / "episodes_stats.jsonl"):
            if isinstance(row.get("stats"), dict) and isinstance(row.get("episode_index"), int):
                out[row["episode_index"]] = row["stats"]
    return out


def _check_file(
    meta: LeRobotMeta,
    path: Path,
    expected: list[EpisodeMeta],
    horizon: int | None,
    ep_stats: dict[int, dict[str, dict[str, np.ndarray]]],
    found: dict[str, list[np.ndarray]],
) -> Iterator[Problem]:
    if not path.is_file():
        yield Problem(str(path), f"data file missing (episodes {', '.join(str(e.index) for e in expected)})")
        return
    columns, problems = _file_columns(meta, path)
    yield from problems
    if "episode_index" not in columns:
        return
    segments = _segments(columns["episode_index"])
    for ep in expected:
        ranges = segments.pop(ep.index, [])
        if len(ranges) != 1:
            yield Problem(
                str(path), "no frames in this file" if not ranges else "frames are not contiguous", ep.index
            )
            continue
        s, e = ranges[0]
        if e - s != ep.length:
            yield Problem(str(path), f"{e - s} frames but the episode metadata says {ep.length}", ep.index)
        arrays = {k: v[s:e] for k, v in columns.items()}
        yield from check_episode(str(path), ep.index, arrays, fps=meta.fps, horizon=horizon)
        for key, values in arrays.items():
            recorded = ep_stats.get(ep.index, {}).get(key)
            if isinstance(recorded, dict) and meta.features[key].get("dtype") != "video":
                yield from compare_stats(str(path), ep.index, key, recorded, values)
            found.setdefault(key, []).append(values)
    for extra in sorted(segments):
        yield Problem(str(path), "frames of an episode that the metadata does not list", extra)


def validate_lerobot(root: Path, horizon: int | None) -> Iterator[Problem]:
    """Every problem of a LeRobot v3.0 / v2.1 dataset directory."""
    meta = read_lerobot_meta(root)
    info_path = str(root / "meta" / "info.json")
    totals = {
        "total_episodes": len(meta.episodes),
        "total_frames": sum(e.length for e in meta.episodes),
        "total_tasks": len(meta.tasks),
    }
    for name, actual in totals.items():
        if name in meta.info and meta.info[name] != actual:
            yield Problem(info_path, f"{meta.info[name]} but the metadata lists {actual}", field=name)
    for key, files in meta.missing_videos().items():
        yield Problem(
            str(root),
            f"video files absent ({len(files)} file(s), e.g. {files[0].relative_to(root) if files else '-'}); "
            "the other features load, this stream only when restored",
            field=key,
            severity="note",
        )
    ep_stats = _episode_stats(meta)
    by_file: dict[Path, list[EpisodeMeta]] = {}
    for ep in meta.episodes:
        by_file.setdefault(ep.data_file, []).append(ep)
    found: dict[str, list[np.ndarray]] = {}
    for path, expected in by_file.items():
        yield from _check_file(meta, path, expected, horizon, ep_stats, found)
    yield from _check_global(meta, found)


def _check_global(meta: LeRobotMeta, found: dict[str, list[np.ndarray]]) -> Iterator[Problem]:
    """Global index continuity and meta/stats.json against the data."""
    if "index" in found:
        index = np.concatenate(found["index"])
        if not np.array_equal(index, np.arange(len(index))):
            row = int(np.argmax(index != np.arange(len(index))))
            yield Problem(
                str(meta.root / "data"),
                f"global frame indices are not 0..{len(index) - 1} (first off at frame {row})",
                field="index",
            )
    stats_path = meta.root / "meta" / "stats.json"
    if not stats_path.is_file():
        if meta.version == "v3.0":
            yield Problem(str(stats_path), "file missing; LeRobot normalises with these statistics")
        return
    stats = read_json_file(stats_path)
    if not isinstance(stats, dict):
        yield Problem(str(stats_path), "expected a JSON object of per-feature statistics")
        return
    for key, parts in found.items():
        if key in stats and isinstance(stats[key], dict) and key not in FRAME_COLUMNS:
            yield from compare_stats(str(stats_path), None, key, stats[key], np.concatenate(parts))
        elif key not in stats and key not in FRAME_COLUMNS:
            yield Problem(str(stats_path), "no statistics for this feature", field=key)


def _zarr_array_problems(root: Path, key: str, n_rows: int) -> Iterator[Problem]:
    """Shape and completeness of data/<key> (metadata and chunk listing only: images are not read)."""
    from scorepolicy.data.zarr_meta import read_array_meta, require_dense

    meta = read_array_meta(root / "data" / key)
    if not meta.shape or meta.shape[0] != n_rows:
        yield Problem(
            str(root / "data" / key),
            f"{meta.shape[0] if meta.shape else 0} rows but meta/episode_ends ends at {n_rows}",
            field=key,
        )
        return
    require_dense(meta)


def validate_zarr(root: Path, horizon: int | None) -> Iterator[Problem]:
    """Every problem of a Diffusion-Policy replay zarr (missing chunks of any data array included)."""
    from scorepolicy.data import zarr_replay as zr

    zr.check_replay_store(root)
    ends = zr._read_episode_ends(root)
    starts = np.concatenate([[0], ends[:-1]])
    data: dict[str, np.ndarray] = {}
    for key in sorted(p.name for p in (root / "data").iterdir() if zr._is_array_dir(p)):
        try:
            problems = list(_zarr_array_problems(root, key, int(ends[-1])))
            yield from problems
            shape = zr._array_shape(root / "data" / key)
            if problems or key in zr.IMAGE_KEYS or len(shape) >= 4:
                continue
            data[key] = zr._read_array(root / "data" / key)
        except ScorePolicyError as exc:
            yield Problem("", str(exc))
    for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        arrays = {k: v[s:e] for k, v in data.items()}
        yield from check_episode(str(root), i, arrays, fps=None, horizon=horizon)


def validate_robomimic(path: Path, horizon: int | None) -> Iterator[Problem]:
    """Every problem of a robomimic HDF5 file (each demo checked on its own)."""
    from scorepolicy.data import robomimic as rm

    h5py = rm._h5py()
    keys = rm.low_dim_obs_keys(path)
    first: dict[str, tuple[int, ...]] | None = None
    with rm._open(path, h5py) as f:
        data = rm._group(f, "data", path)
        for n, name in enumerate(rm._demo_names(data, path)):
            where = f"{path}: data/{name}"
            try:
                arrays = rm._read_demo(data[name], keys, where, h5py)
            except ScorePolicyError as exc:
                yield Problem("", str(exc), n)
                continue
            layout = {k: v.shape[1:] for k, v in arrays.items()}
            first = first if first is not None else layout
            for key in sorted(set(first) | set(layout)):
                if first.get(key) != layout.get(key):
                    yield Problem(
                        where,
                        f"shape {layout.get(key)} per step but the first demo has {first.get(key)}",
                        n,
                        key,
                    )
            samples = data[name].attrs.get("num_samples")
            if samples is not None and int(samples) != len(arrays["action"]):
                yield Problem(
                    where,
                    f"attribute num_samples = {int(samples)} but the demo has {len(arrays['action'])} steps",
                    n,
                )
            yield from check_episode(where, n, arrays, fps=None, horizon=horizon)
