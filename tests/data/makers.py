"""Tiny datasets in every supported format, written by the tests themselves."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from scorepolicy.core.episodes import Episodes
from scorepolicy.data.lerobot_stats import feature_stats, stats_to_json
from scorepolicy.data.lerobot_write import write_lerobot_v3
from scorepolicy.data.zarr_replay import write_replay_zarr

REPO_ROOT = Path(__file__).resolve().parents[2]
LENGTHS = (12, 9, 15, 10)


def shared_so101() -> Path:
    """The shared SO-101 LeRobot recording, or skip the test when it is not on this machine."""
    default = REPO_ROOT.parent / "shared" / "data" / "so101_record_test"
    path = Path(os.environ.get("SCOREPOLICY_SO101", str(default)))
    if not (path / "meta" / "info.json").is_file():
        pytest.skip(f"so101_record_test not found at {path} (set SCOREPOLICY_SO101 to its location)")
    return path


def small_episodes(lengths: tuple[int, ...] = LENGTHS, seed: int = 0) -> Episodes:
    """Episodes with a 3-D state, a 2-D action, a scalar reward and two tasks, at 10 fps."""
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    state = rng.normal(size=(n, 3)).cumsum(axis=0).astype(np.float32)
    task_index = np.repeat(np.arange(len(lengths)) % 2, lengths).astype(np.int64)
    return Episodes(
        data={
            "observation.state": state,
            "action": (np.tanh(state[:, :2]) + rng.normal(scale=0.01, size=(n, 2))).astype(np.float32),
            "next.reward": rng.uniform(size=(n, 1)).astype(np.float32),
            "task_index": task_index,
        },
        episode_ends=np.cumsum(lengths),
        source="test",
        attrs={
            "fps": 10,
            "tasks": ["push the block", "lift the cube"],
            "feature_names": {"observation.state": ["x", "y", "z"], "action": ["vx", "vy"]},
        },
    )


def write_v3(path: Path, episodes: Episodes | None = None, **kwargs: object) -> Path:
    """A LeRobot v3.0 dataset written by scorepolicy's writer."""
    return write_lerobot_v3(episodes or small_episodes(), path, **kwargs)  # type: ignore[arg-type]


def _v21_features(episodes: Episodes) -> dict[str, dict[str, object]]:
    features: dict[str, dict[str, object]] = {}
    for key, arr in episodes.data.items():
        if key != "task_index":
            features[key] = {"dtype": str(arr.dtype), "shape": [int(arr.shape[1])], "names": None}
    for key, dtype in (
        ("timestamp", "float32"),
        *((k, "int64") for k in ("frame_index", "episode_index", "index", "task_index")),
    ):
        features[key] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def write_v21(root: Path, episodes: Episodes | None = None, with_video: bool = False) -> Path:
    """A LeRobot v2.1 dataset laid out by hand: jsonl metadata and one parquet file per episode."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    episodes = episodes or small_episodes()
    tasks = list(episodes.attrs["tasks"])  # type: ignore[call-overload]
    features = _v21_features(episodes)
    if with_video:
        features["observation.images.cam"] = {"dtype": "video", "shape": [8, 8, 3], "names": None}
    (root / "meta").mkdir(parents=True)
    ep_lines, stats_lines = [], []
    for i in range(episodes.n_episodes):
        part = episodes.episode_slice(i)
        n = part.stop - part.start
        cols = {k: v[part] for k, v in episodes.data.items()}
        cols.update(
            timestamp=(np.arange(n) / 10).astype(np.float32),
            frame_index=np.arange(n, dtype=np.int64),
            episode_index=np.full(n, i, np.int64),
            index=np.arange(part.start, part.stop, dtype=np.int64),
        )
        table = pa.table({k: (pa.array(v) if v.ndim == 1 else pa.array(list(v))) for k, v in cols.items()})
        path = root / "data" / "chunk-000" / f"episode_{i:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        ep_tasks = [tasks[t] for t in dict.fromkeys(cols["task_index"].tolist())]
        ep_lines.append(json.dumps({"episode_index": i, "tasks": ep_tasks, "length": n}))
        stats = {k: feature_stats(v) for k, v in cols.items()}
        stats_lines.append(json.dumps({"episode_index": i, "stats": stats_to_json(stats)}))
    (root / "meta" / "episodes.jsonl").write_text("\n".join(ep_lines) + "\n")
    (root / "meta" / "episodes_stats.jsonl").write_text("\n".join(stats_lines) + "\n")
    task_lines = [json.dumps({"task_index": i, "task": t}) for i, t in enumerate(tasks)]
    (root / "meta" / "tasks.jsonl").write_text("\n".join(task_lines) + "\n")
    info = {
        "codebase_version": "v2.1",
        "robot_type": "test_arm",
        "total_episodes": episodes.n_episodes,
        "total_frames": episodes.n_steps,
        "total_tasks": len(tasks),
        "total_videos": 0,
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": 10,
        "splits": {"train": f"0:{episodes.n_episodes}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    return root


def write_robomimic(path: Path, lengths: tuple[int, ...] = LENGTHS, seed: int = 0) -> Path:
    """A robomimic-style HDF5 file: low-dim obs, an image obs, actions, rewards, dones."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift"})
        for i, n in enumerate(lengths):
            demo = data.create_group(f"demo_{i}")
            demo.attrs["num_samples"] = n
            obs = demo.create_group("obs")
            obs["robot0_eef_pos"] = rng.normal(size=(n, 3))
            obs["object"] = rng.normal(size=(n, 4)).astype(np.float32)
            obs["agentview_image"] = rng.integers(0, 255, size=(n, 8, 8, 3), dtype=np.uint8)
            demo["actions"] = rng.uniform(-1, 1, size=(n, 2))
            demo["rewards"] = np.zeros(n)
            demo["dones"] = np.zeros(n, dtype=np.int64)
    return path


def write_zarr(path: Path, lengths: tuple[int, ...] = LENGTHS) -> Path:
    """A replay zarr with state and action (Push-T-like keys)."""
    rng = np.random.default_rng(0)
    n = sum(lengths)
    data = {
        "state": rng.normal(size=(n, 5)).astype(np.float32),
        "action": rng.normal(size=(n, 2)).astype(np.float32),
    }
    return write_replay_zarr(Episodes(data, np.cumsum(lengths)), path)


def edit_data_file(root: Path, key: str, edit: Callable[[np.ndarray], np.ndarray]) -> Path:
    """Rewrite column `key` of a LeRobot v3.0 dataset's first data file with `edit(values)`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = root / "data" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(path)
    values = np.stack(table.column(key).to_numpy(zero_copy_only=False))
    new = edit(values)
    column = (
        pa.array(new)
        if new.ndim == 1
        else pa.FixedSizeListArray.from_arrays(pa.array(new.ravel()), new.shape[1])
    )
    table = table.set_column(table.column_names.index(key), key, column)
    pq.write_table(table, path)
    return path


def encode_video(path: Path, frames: np.ndarray, fps: int) -> Path:
    """An mpeg4 video of uint8 RGB frames (N, H, W, 3) at `fps` (H and W even), high bit rate."""
    av = pytest.importorskip("av")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.bit_rate = 4_000_000
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_v3_with_video(path: Path, episodes: Episodes, cameras: dict[str, np.ndarray]) -> Path:
    """A LeRobot v3.0 dataset (our writer) plus one video file per camera holding every episode back to
    back, declared in info.json and located per episode (`videos/<key>/...` columns, from/to timestamps) as
    LeRobot v3.0 does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scorepolicy.data.lerobot_write import VIDEO_PATH

    root = write_lerobot_v3(episodes, path)
    fps = int(episodes.attrs["fps"])  # type: ignore[call-overload]
    info = json.loads((root / "meta" / "info.json").read_text())
    info["video_path"] = VIDEO_PATH
    episodes_file = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(episodes_file)
    starts = episodes.episode_starts / fps
    ends = episodes.episode_ends / fps
    for key, frames in cameras.items():
        encode_video(root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0), frames, fps)
        h, w = frames.shape[1:3]
        info["features"][key] = {
            "dtype": "video",
            "shape": [h, w, 3],
            "names": ["height", "width", "channels"],
            "info": {"video.fps": fps, "video.codec": "mpeg4", "video.pix_fmt": "yuv420p"},
        }
        n = episodes.n_episodes
        for name, values in (
            ("chunk_index", pa.array([0] * n, pa.int64())),
            ("file_index", pa.array([0] * n, pa.int64())),
            ("from_timestamp", pa.array(starts, pa.float64())),
            ("to_timestamp", pa.array(ends, pa.float64())),
        ):
            table = table.append_column(f"videos/{key}/{name}", values)
    pq.write_table(table, episodes_file)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    return root
