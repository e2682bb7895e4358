"""LeRobot v3.0 / v2.1 reading, v3.0 writing (exact round trip, LeRobot's layout), videos, shared data."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from tests.data.makers import shared_so101, small_episodes, write_v3, write_v21

from scorepolicy.core.episodes import Episodes
from scorepolicy.data import lerobot, lerobot_video
from scorepolicy.data.lerobot import read_lerobot, read_lerobot_meta
from scorepolicy.errors import ScorePolicyError


def assert_same(a: Episodes, b: Episodes, keys: list[str] | None = None) -> None:
    assert np.array_equal(a.episode_ends, b.episode_ends)
    for key in keys or sorted(a.data):
        assert a.data[key].dtype == b.data[key].dtype, key
        assert np.array_equal(a.data[key], b.data[key]), key


def test_v3_write_read_round_trip_is_exact(tmp_path: Path) -> None:
    src = small_episodes()
    first = read_lerobot(write_v3(tmp_path / "a"))
    assert first.data["observation.state"].dtype == np.float32
    assert first.data["next.reward"].shape == (src.n_steps, 1)
    assert_same(src, first, ["observation.state", "action", "next.reward", "task_index"])
    assert first.attrs["tasks"] == src.attrs["tasks"] and first.attrs["fps"] == 10
    assert first.attrs["feature_names"]["action"] == ["vx", "vy"]  # type: ignore[index]
    again = read_lerobot(write_v3(tmp_path / "b", first))
    assert set(again.data) == set(first.data)
    assert_same(first, again)
    assert again.attrs == first.attrs


def test_writer_refuses_nan_and_an_existing_directory(tmp_path: Path) -> None:
    eps = small_episodes()
    eps.data["action"][5, 0] = np.inf
    with pytest.raises(ScorePolicyError, match=r"'action' holds NaN/inf at step 5 \(episode 0\)"):
        write_v3(tmp_path / "bad", eps)
    assert not (tmp_path / "bad").exists() and not list(tmp_path.iterdir())
    write_v3(tmp_path / "ok")
    with pytest.raises(ScorePolicyError, match="already exists"):
        write_v3(tmp_path / "ok")


def test_v3_layout_matches_lerobot(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    root = write_v3(tmp_path / "ds", data_file_mb=0.0005)  # tiny files: episodes spread over several
    info = json.loads((root / "meta" / "info.json").read_text())
    for key in (
        "codebase_version",
        "fps",
        "features",
        "total_episodes",
        "total_frames",
        "total_tasks",
        "chunks_size",
        "data_files_size_in_mb",
        "video_files_size_in_mb",
        "data_path",
        "video_path",
        "splits",
        "robot_type",
    ):
        assert key in info, key
    assert info["codebase_version"] == "v3.0" and info["features"]["action"]["shape"] == [2]
    assert info["features"]["timestamp"] == {"dtype": "float32", "shape": [1], "names": None}
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    assert len(files) > 1
    schema = pq.read_schema(files[0])
    assert str(schema.field("action").type) == "fixed_size_list<element: float>[2]"
    assert str(schema.field("frame_index").type) == "int64"
    assert json.loads(schema.metadata[b"huggingface"])["info"]["features"]["action"]["length"] == 2
    tasks = pq.read_table(root / "meta" / "tasks.parquet")
    assert tasks.column_names == ["task_index", "task"]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    episodes = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    for col in (
        "episode_index",
        "tasks",
        "length",
        "data/chunk_index",
        "data/file_index",
        "dataset_from_index",
        "dataset_to_index",
        "stats/action/mean",
        "stats/frame_index/min",
        "meta/episodes/file_index",
    ):
        assert col in episodes.column_names, col
    assert episodes.column("length").to_pylist() == [12, 9, 15, 10]
    stats = json.loads((root / "meta" / "stats.json").read_text())
    assert set(stats["action"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    assert stats["action"]["count"] == [46]
    assert_same(small_episodes(), read_lerobot(root), ["action", "task_index"])


def test_v21_reads_like_v3(tmp_path: Path) -> None:
    v21 = read_lerobot(write_v21(tmp_path / "v21"))
    v3 = read_lerobot(write_v3(tmp_path / "v3"))
    assert v21.attrs["codebase_version"] == "v2.1" and v21.attrs["robot_type"] == "test_arm"
    assert v21.attrs["tasks"] == v3.attrs["tasks"]
    assert_same(
        v3, v21, ["observation.state", "action", "next.reward", "task_index", "frame_index", "episode_index"]
    )


def test_feature_selection_and_unknown_feature(tmp_path: Path) -> None:
    root = write_v3(tmp_path / "ds")
    eps = read_lerobot(root, keys=["action"])
    assert "observation.state" not in eps.data and "task_index" in eps.data
    with pytest.raises(ScorePolicyError, match="feature 'nope' not declared"):
        read_lerobot(root, keys=["nope"])


def test_absent_videos_load_everything_else_and_fail_clearly_when_asked(tmp_path: Path) -> None:
    root = write_v21(tmp_path / "ds", with_video=True)
    eps = read_lerobot(root)
    assert "observation.images.cam" not in eps.data
    assert eps.attrs["missing_video_keys"] == ["observation.images.cam"]
    with pytest.raises(ScorePolicyError, match=r"video stream 'observation.images.cam' .* absent") as exc:
        read_lerobot(root, keys=["observation.images.cam", "action"])
    assert "\n" not in str(exc.value)


def _write_video(path: Path, values: list[int], fps: int) -> None:
    av = pytest.importorskip("av")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for v in values:
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), v, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def test_video_frames_are_decoded_when_present(tmp_path: Path) -> None:
    eps = small_episodes(lengths=(4, 3))
    root = write_v21(tmp_path / "ds", eps, with_video=True)
    for i, n in enumerate((4, 3)):
        values = [40 * i + 20 * t for t in range(n)]
        _write_video(
            root / "videos" / "chunk-000" / "observation.images.cam" / f"episode_{i:06d}.mp4", values, 10
        )
    frames = read_lerobot(root, keys=["observation.images.cam"]).data["observation.images.cam"]
    assert frames.shape == (7, 16, 16, 3) and frames.dtype == np.uint8
    expected = np.array([0, 20, 40, 60, 40, 60, 80])
    assert np.all(np.abs(frames.mean(axis=(1, 2, 3)) - expected) < 6)


def test_so101_loads_its_facts_reading_each_data_file_once(monkeypatch: pytest.MonkeyPatch) -> None:
    root = shared_so101()
    reads: list[tuple[str, tuple[str, ...] | None]] = []
    read_parquet = lerobot.read_parquet

    def counting(path: Path, columns: Sequence[str] | None = None) -> object:
        reads.append((str(path.relative_to(root)), tuple(columns) if columns is not None else None))
        return read_parquet(path, columns)

    def no_video(*args: object, **kwargs: object) -> None:
        raise AssertionError("videos are decoded only when asked for")

    monkeypatch.setattr(lerobot, "read_parquet", counting)
    monkeypatch.setattr(lerobot_video, "decode_episode_videos", no_video)
    eps = read_lerobot(root)
    monkeypatch.undo()
    # what makes it fast: one read of each data file, of the declared vector columns only
    data_reads = [(p, c) for p, c in reads if p.startswith("data/")]
    assert [p for p, _ in data_reads] == ["data/chunk-000/file-000.parquet"]
    assert data_reads[0][1] is not None and set(data_reads[0][1]) == set(read_lerobot_meta(root).vector_keys)
    assert eps.n_episodes == 4 and eps.n_steps == 1492 and eps.attrs["fps"] == 30
    assert eps.data["observation.state"].shape == (1492, 6) and eps.data["action"].shape == (1492, 6)
    assert eps.data["task_index"].dtype == np.int64 and len(eps.attrs["tasks"]) == 1  # type: ignore[arg-type]
    meta = read_lerobot_meta(root)
    assert sorted(meta.missing_videos()) == ["observation.images.front", "observation.images.top"]


def test_so101_round_trip_is_exact(tmp_path: Path) -> None:
    first = read_lerobot(shared_so101())
    again = read_lerobot(write_v3(tmp_path / "so101", first))
    assert_same(first, again)
    for key in ("tasks", "fps", "robot_type", "feature_names"):
        assert again.attrs[key] == first.attrs[key], key


def test_lerobot_loads_our_v3_output(tmp_path: Path) -> None:
    """The README's claim: LeRobot's own LeRobotDataset reads what `data convert --to lerobot-v3` writes."""
    module = pytest.importorskip(
        "lerobot.datasets.lerobot_dataset",
        reason="lerobot is not installed (pip install lerobot; it pins its own torch, so not in dev)",
    )
    import torch

    from scorepolicy.data.formats import convert_dataset

    src = small_episodes()
    root = convert_dataset(write_v21(tmp_path / "v21", src), "lerobot-v3", tmp_path / "v3")
    dataset = module.LeRobotDataset("local/scorepolicy-test", root=root)  # a local root: no hub access
    assert dataset.num_episodes == src.n_episodes and dataset.num_frames == src.n_steps
    assert dataset.fps == 10
    row = int(src.episode_ends[0]) + 2  # episode 1, frame 2
    item = dataset[row]
    assert int(item["episode_index"]) == 1 and int(item["frame_index"]) == 2
    for key in ("observation.state", "action"):
        assert torch.equal(item[key], torch.from_numpy(src.data[key][row])), key
    assert item["task"] == src.attrs["tasks"][1]  # type: ignore[index]
    mean = np.asarray(dataset.meta.stats["action"]["mean"], dtype=np.float64)
    np.testing.assert_allclose(mean, src.data["action"].astype(np.float64).mean(0), rtol=1e-5)
