"""Tests for the Diffusion-Policy replay zarr reader/writer."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from scorepolicy.core.episodes import Episodes
from scorepolicy.data import zarr_replay
from scorepolicy.data.zarr_meta import ArrayMeta
from scorepolicy.data.zarr_replay import read_replay_zarr, write_replay_zarr
from scorepolicy.errors import ScorePolicyError

REPO_ROOT = Path(__file__).resolve().parents[2]
ZARR_MAJOR = int(zarr.__version__.split(".")[0])


def shared_pusht_zarr() -> Path:
    """The shared Push-T replay zarr, or skip the test when it is not on this machine."""
    default = REPO_ROOT.parent / "shared" / "data" / "pusht_cchi_v7_replay.zarr"
    path = Path(os.environ.get("SCOREPOLICY_PUSHT_ZARR", str(default)))
    if not path.is_dir():
        pytest.skip(f"Push-T replay zarr not found at {path} (set SCOREPOLICY_PUSHT_ZARR to its location)")
    return path


def small_episodes() -> Episodes:
    """Three episodes (lengths 4, 7, 5) with float32, float64, int and image-like keys."""
    rng = np.random.default_rng(0)
    n = 16
    return Episodes(
        data={
            "state": rng.normal(size=(n, 5)).astype(np.float32) * 100,
            "action": rng.uniform(0, 512, size=(n, 2)).astype(np.float32),
            "keypoint": rng.normal(size=(n, 9, 2)).astype(np.float64),
            "label": rng.integers(0, 10, size=(n, 1)).astype(np.int32),
            "img": rng.uniform(0, 255, size=(n, 4, 4, 3)).astype(np.float32),
        },
        episode_ends=np.array([4, 11, 16]),
        source="test",
        attrs={"fps": 10, "task": "unit"},
    )


def assert_one_line_error(exc: pytest.ExceptionInfo[ScorePolicyError], *fragments: str) -> None:
    """The message is a single line and names every fragment."""
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return write_replay_zarr(small_episodes(), tmp_path / "small.zarr")


def test_round_trip_is_exact(store: Path) -> None:
    src = small_episodes()
    ep = read_replay_zarr(store, keys=["state", "action", "keypoint", "label", "img"])
    np.testing.assert_array_equal(ep.episode_ends, src.episode_ends)
    assert ep.episode_ends.dtype == np.int64
    for key, arr in src.data.items():
        expected = arr.astype(np.float32) if arr.dtype.kind == "f" else arr
        assert ep.data[key].dtype == expected.dtype, key
        np.testing.assert_array_equal(ep.data[key], expected)
    assert ep.data["label"].dtype == np.int32
    assert ep.attrs == src.attrs
    assert ep.source == str(store)


def test_episode_boundaries(store: Path) -> None:
    src = small_episodes()
    ep = read_replay_zarr(store)
    assert ep.n_episodes == 3 and ep.n_steps == 16
    np.testing.assert_array_equal(ep.episode_starts, [0, 4, 11])
    for i in range(3):
        got, want = ep.data["state"][ep.episode_slice(i)], src.data["state"][src.episode_slice(i)]
        np.testing.assert_array_equal(got, want)


def test_default_keys_skip_images(store: Path) -> None:
    assert sorted(read_replay_zarr(store).data) == ["action", "keypoint", "label", "state"]
    assert list(read_replay_zarr(store, keys=["img"]).data) == ["img"]


def test_written_store_is_plain_zarr_v2(store: Path) -> None:
    assert json.loads((store / "data" / "state" / ".zarray").read_text())["zarr_format"] == 2
    group = zarr.open_group(str(store), mode="r")
    np.testing.assert_array_equal(group["meta"]["episode_ends"][...], [4, 11, 16])
    np.testing.assert_array_equal(group["data"]["action"][...], small_episodes().data["action"])


def _grid_store(path: Path, values: np.ndarray, *, dense: bool) -> Path:
    """A replay zarr written by the zarr package itself, chunks (4, 2, 3) over `values`."""
    kwargs = {"zarr_format": 2} if ZARR_MAJOR >= 3 else {}
    root = zarr.open_group(str(path), mode="w", **kwargs)
    if ZARR_MAJOR >= 3:
        data, meta = root.require_group("data"), root.require_group("meta")
        config = {"write_empty_chunks": dense}
        data.create_array("x", shape=values.shape, dtype="f4", chunks=(4, 2, 3), config=config)[...] = values
        meta.create_array("episode_ends", shape=(2,), dtype="i8", chunks=(1,))[...] = [3, 10]
    else:
        data = root.require_group("data")
        data.create_dataset("x", data=values, chunks=(4, 2, 3), write_empty_chunks=dense)
        root.require_group("meta").create_dataset("episode_ends", data=np.array([3, 10]), chunks=(1,))
    return path


def test_reads_store_written_by_zarr_with_grid_chunks(tmp_path: Path) -> None:
    values = np.arange(10 * 3 * 4, dtype=np.float32).reshape(10, 3, 4)
    values[4:8] = 0.0  # an all-fill chunk: written too, as a replay buffer is
    ep = read_replay_zarr(_grid_store(tmp_path / "grid.zarr", values, dense=True))
    np.testing.assert_array_equal(ep.data["x"], values)
    np.testing.assert_array_equal(ep.episode_ends, [3, 10])


def test_chunks_left_out_by_zarr_are_refused_not_read_as_zeros(tmp_path: Path) -> None:
    values = np.arange(10 * 3 * 4, dtype=np.float32).reshape(10, 3, 4)
    values[4:8] = 0.0  # zarr skips all-fill chunks unless told to write them
    path = _grid_store(tmp_path / "sparse.zarr", values, dense=False)
    with pytest.raises(ScorePolicyError) as exc:
        read_replay_zarr(path)
    assert_one_line_error(exc, "data/x", "rows 4-7", "4 chunk file(s)")


def test_writer_keeps_all_fill_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zarr_replay, "_WRITE_CHUNK_BYTES", 32)  # 4 rows of 2 float32 per chunk
    action = np.ones((12, 2), np.float32)
    action[4:8] = 0.0  # a whole chunk equal to the fill value
    path = write_replay_zarr(Episodes({"action": action}, np.array([6, 12])), tmp_path / "w.zarr")
    assert sorted(p.name for p in (path / "data" / "action").iterdir() if p.name[0] != ".") == [
        "0.0",
        "1.0",
        "2.0",
    ]
    np.testing.assert_array_equal(read_replay_zarr(path).data["action"], action)


@pytest.mark.skipif(ZARR_MAJOR < 3, reason="zarr v3 format needs zarr>=3")
def test_reads_zarr_v3_format_through_zarr(tmp_path: Path) -> None:
    path = tmp_path / "v3.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    values = np.linspace(0, 1, 12, dtype=np.float64).reshape(6, 2)
    root.require_group("data").create_array("a", shape=values.shape, dtype="f8", chunks=(4, 2))[...] = values
    root.require_group("meta").create_array("episode_ends", shape=(2,), dtype="i8")[...] = [2, 6]
    ep = read_replay_zarr(path)
    assert ep.data["a"].dtype == np.float32
    np.testing.assert_allclose(ep.data["a"], values.astype(np.float32))


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ScorePolicyError) as exc:
        read_replay_zarr(tmp_path / "nope.zarr")
    assert_one_line_error(exc, "nope.zarr", "not found")


def test_not_a_zarr_directory(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    a_file = tmp_path / "file.zarr"
    a_file.write_text("x")
    for bad in (plain, a_file):
        with pytest.raises(ScorePolicyError) as exc:
            read_replay_zarr(bad)
        assert_one_line_error(exc, str(bad), "not a zarr directory")


def test_missing_episode_ends(store: Path) -> None:
    shutil.rmtree(store / "meta" / "episode_ends")
    with pytest.raises(ScorePolicyError) as exc:
        read_replay_zarr(store)
    assert_one_line_error(exc, str(store), "meta/episode_ends")


def test_missing_data_group(store: Path) -> None:
    shutil.rmtree(store / "data")
    with pytest.raises(ScorePolicyError) as exc:
        read_replay_zarr(store)
    assert_one_line_error(exc, str(store), "data/")


def test_absent_key_lists_available(store: Path) -> None:
    with pytest.raises(ScorePolicyError) as exc:
        read_replay_zarr(store, keys=["state", "velocity"])
    assert_one_line_error(exc, "velocity", "action, img, keypoint, label, state")


def test_ragged_lengths(tmp_path: Path) -> None:
    path = write_replay_zarr(small_episodes(), tmp_path / "ragged.zarr")
    short = Episodes(data={"state": np.zeros((12, 5), np.float32)}, episode_ends=np.array([12]))
    write_replay_zarr(short, tmp_path / "short.zarr")
    shutil.rmtree(path / "data" / "state")
    shutil.copytree(tmp_path / "short.zarr" / "data" / "state", path / "data" / "state")
    with pytest.raises(ScorePolicyError) as exc:
        read_replay_zarr(path)
    assert_one_line_error(exc, "data/state", "12 steps", "16")


def test_bad_episode_ends(tmp_path: Path) -> None:
    path = write_replay_zarr(small_episodes(), tmp_path / "ends.zarr")
    group = zarr.open_group(str(path), mode="r+")
    group["meta"]["episode_ends"][...] = [4, 4, 16]
    with pytest.raises(ScorePolicyError) as exc:
        read_replay_zarr(path)
    assert_one_line_error(exc, "meta/episode_ends", "strictly increasing")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_key_and_episode(tmp_path: Path, bad: float) -> None:
    src = small_episodes()
    src.data["action"][6, 1] = bad  # step 6 lies in episode 1 (steps 4..10)
    path = write_replay_zarr(src, tmp_path / "nan.zarr")
    with pytest.raises(ScorePolicyError) as exc:
        read_replay_zarr(path)
    assert_one_line_error(exc, "data/action", "episode 1", "step 6")
    assert "state" in read_replay_zarr(path, keys=["state"]).data  # other keys still readable


def test_write_refuses_to_overwrite(store: Path) -> None:
    before = {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file()}
    other = Episodes(data={"state": np.ones((3, 5), np.float32)}, episode_ends=np.array([3]))
    with pytest.raises(ScorePolicyError) as exc:
        write_replay_zarr(other, store)
    assert_one_line_error(exc, str(store), "overwrite=True")
    after = {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file()}
    assert after == before
    write_replay_zarr(other, store, overwrite=True)
    ep = read_replay_zarr(store)
    assert list(ep.data) == ["state"] and ep.n_steps == 3
    assert sorted(p.name for p in store.parent.iterdir()) == ["small.zarr"]  # no temp dirs left


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(zarr_replay, "_write_array", broken)
    with pytest.raises(OSError, match="disk full"):
        write_replay_zarr(small_episodes(), tmp_path / "bad.zarr")
    assert list(tmp_path.iterdir()) == []


def test_shared_pusht_zarr(monkeypatch: pytest.MonkeyPatch) -> None:
    path = shared_pusht_zarr()
    decoded: list[str] = []
    fast = zarr_replay._read_v2_fast

    def counting(meta: ArrayMeta) -> np.ndarray:
        decoded.append(f"{meta.path.parent.name}/{meta.path.name}")
        return fast(meta)

    def no_zarr(*args: object, **kwargs: object) -> None:
        raise AssertionError("the plain v2 store should be decoded with numcodecs, not through zarr")

    monkeypatch.setattr(zarr_replay, "_read_v2_fast", counting)
    monkeypatch.setattr(zarr, "open_array", no_zarr)
    ep = read_replay_zarr(path)
    monkeypatch.undo()
    # what makes it fast: each wanted array decoded once by the direct path, the 29 MB images never
    assert sorted(decoded) == [
        "data/action",
        "data/keypoint",
        "data/n_contacts",
        "data/state",
        "meta/episode_ends",
    ]
    assert ep.n_episodes == 206 and ep.n_steps == 25650
    assert sorted(ep.data) == ["action", "keypoint", "n_contacts", "state"]
    shapes = {k: v.shape for k, v in ep.data.items()}
    expected = {"action": (2,), "keypoint": (9, 2), "n_contacts": (1,), "state": (5,)}
    assert shapes == {k: (25650, *rest) for k, rest in expected.items()}
    assert all(v.dtype == np.float32 for v in ep.data.values())
    group = zarr.open_group(str(path), mode="r")
    np.testing.assert_array_equal(ep.data["state"], group["data"]["state"][...])
