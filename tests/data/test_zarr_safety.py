"""Replay zarr stores that must be refused: missing chunks (lost data, not zeros) and arrays whose
dtype or codec would make zarr/numcodecs run code stored in the data (pickle)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from tests.data.makers import write_zarr
from tests.data.test_zarr_replay import shared_pusht_zarr

from scorepolicy.cli import main
from scorepolicy.core.episodes import Episodes
from scorepolicy.data import zarr_replay
from scorepolicy.data.formats import convert_dataset, load_dataset, open_dataset
from scorepolicy.data.inspect import dataset_info
from scorepolicy.data.validate import validate_dataset
from scorepolicy.data.zarr_meta import ALLOWED_CODECS
from scorepolicy.errors import ScorePolicyError

ZARR_MAJOR = int(zarr.__version__.split(".")[0])


def _one_line(exc: pytest.ExceptionInfo[ScorePolicyError], *fragments: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


def _chunked_store(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The makers' Push-T-like store (46 steps), written with 8-row chunks of data/action."""
    monkeypatch.setattr(zarr_replay, "_WRITE_CHUNK_BYTES", 64)  # 8 rows of 2 float32
    write_zarr(path)
    monkeypatch.undo()
    return path


def test_missing_chunk_is_refused_by_reading_validation_and_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _chunked_store(tmp_path / "small.zarr", monkeypatch)
    assert validate_dataset(store, horizon=2).ok
    (store / "data" / "action" / "2.0").unlink()  # rows 16..23
    for read in (
        lambda: load_dataset(store),
        lambda: load_dataset(store, finite=False),
        lambda: dataset_info(store),
    ):
        with pytest.raises(ScorePolicyError) as exc:
            read()
        _one_line(exc, "data/action", "rows 16-23", "1 chunk file(s)")
    report = validate_dataset(store, horizon=2)
    assert not report.ok
    assert any("data/action" in line and "rows 16-23" in line for line in report.lines()), report.lines()
    assert main(["data", "validate", str(store), "--horizon", "2"]) == 1
    out = capsys.readouterr().out
    assert "rows 16-23" in out and "1 problem found" in out
    assert main(["data", "convert", str(store), "--out", str(tmp_path / "out")]) == 2
    assert "data/action" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_missing_chunks_are_named_by_their_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _chunked_store(tmp_path / "small.zarr", monkeypatch)
    for name in ("0.0", "1.0", "5.0"):  # rows 0..15 and 40..45 (the last, short chunk)
        (store / "data" / "action" / name).unlink()
    with pytest.raises(ScorePolicyError) as exc:
        load_dataset(store)
    _one_line(exc, "data/action", "3 chunk file(s)", "rows 0-15, 40-45", "(22 of 46 rows)")


def test_missing_chunk_of_an_array_not_read_is_found_by_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zarr_replay, "_WRITE_CHUNK_BYTES", 4 * (4 * 4 * 3 * 4))  # 4 images per chunk
    n = 10
    episodes = Episodes(
        {"action": np.ones((n, 2), np.float32), "img": np.ones((n, 4, 4, 3), np.float32)}, np.array([4, n])
    )
    store = zarr_replay.write_replay_zarr(episodes, tmp_path / "img.zarr")
    (store / "data" / "img" / "1.0.0.0").unlink()
    assert "img" not in load_dataset(store).data  # images are not read by default: nothing lost there
    lines = validate_dataset(store).lines()
    assert any("data/img" in line and "rows 4-7" in line for line in lines), lines


def test_missing_chunk_of_the_shared_pusht_store(tmp_path: Path) -> None:
    src = shared_pusht_zarr()
    copy = tmp_path / "pusht.zarr"  # every array but the 29 MB images; the shared data stays untouched
    shutil.copytree(src, copy, ignore=lambda d, names: ["img"] if Path(d).name == "data" else [])
    assert load_dataset(copy).n_steps == 25650
    assert validate_dataset(copy, horizon=16).ok
    chunks = json.loads((copy / "data" / "action" / ".zarray").read_text())["chunks"][0]
    (copy / "data" / "action" / "5.0").unlink()
    rows = f"rows {5 * chunks}-{6 * chunks - 1}"
    with pytest.raises(ScorePolicyError) as exc:
        load_dataset(copy)
    _one_line(exc, "data/action", rows)
    report = validate_dataset(copy, horizon=16)
    assert not report.ok and any("data/action" in line and rows in line for line in report.lines())


class _Touch:
    """Unpickling it creates `path`: the marker of code run from data."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.path,))


def _write(path: Path, doc: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _hostile_store(
    root: Path, marker: Path, *, dtype: str = "|O", filters: list[object] | None = None
) -> Path:
    """A replay zarr written by hand: a valid meta/episode_ends and data/obj, an object array whose only
    chunk is a pickle that creates `marker` when unpickled (numcodecs' pickle filter would do so)."""
    for group in (root, root / "data", root / "meta"):
        _write(group / ".zgroup", {"zarr_format": 2})
    ends = root / "meta" / "episode_ends"
    _write(
        ends / ".zarray",
        {"zarr_format": 2, "shape": [2], "chunks": [2], "dtype": "<i8", "compressor": None,
         "fill_value": 0, "filters": None, "order": "C"},
    )  # fmt: skip
    (ends / "0").write_bytes(np.array([2, 4], "<i8").tobytes())
    obj = root / "data" / "obj"
    filters = [{"id": "pickle", "protocol": 5}] if filters is None else filters
    _write(
        obj / ".zarray",
        {"zarr_format": 2, "shape": [4], "chunks": [4], "dtype": dtype, "compressor": None,
         "fill_value": None, "filters": filters, "order": "C"},
    )  # fmt: skip
    (obj / "0").write_bytes(pickle.dumps(np.array([_Touch(marker)] * 4, dtype=object), protocol=5))
    return root


def test_pickle_payload_really_runs_code(tmp_path: Path) -> None:
    """The test store's chunk is hostile: unpickling it (as numcodecs would) creates the marker."""
    _hostile_store(tmp_path / "s.zarr", tmp_path / "proof")
    pickle.loads((tmp_path / "s.zarr" / "data" / "obj" / "0").read_bytes())
    assert (tmp_path / "proof").exists()


def test_object_dtype_with_pickle_filter_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "code-ran"
    store = _hostile_store(tmp_path / "hostile.zarr", marker)
    calls = [
        lambda: open_dataset(store),
        lambda: load_dataset(store),
        lambda: load_dataset(store, keys=["obj"], finite=False),
        lambda: dataset_info(store),
        lambda: convert_dataset(store, "lerobot-v3", tmp_path / "out", fps=10),
        lambda: zarr_replay.read_replay_zarr(store, keys=["obj"]),
    ]
    for call in calls:
        with pytest.raises(ScorePolicyError) as exc:
            call()
        _one_line(exc, "data/obj", "'pickle'")
    report = validate_dataset(store)
    assert not report.ok and any("data/obj" in line and "'pickle'" in line for line in report.lines())
    for argv in (["info"], ["validate"], ["convert", "--out", str(tmp_path / "out2")]):
        assert main(["data", argv[0], str(store), *argv[1:]]) in (1, 2)
        captured = capsys.readouterr()
        assert "data/obj" in captured.out + captured.err
    (store / "data" / ".zgroup").unlink()  # arrays under a directory that is not marked as a group
    with pytest.raises(ScorePolicyError) as exc:
        open_dataset(store)
    _one_line(exc, "data/obj", "'pickle'")
    assert not marker.exists(), "code stored in the data ran"
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


@pytest.mark.parametrize(
    ("dtype", "filters", "named"),
    [
        ("|O", [], "'|O'"),  # object dtype even without a filter
        ("<f4", [{"id": "pickle"}], "'pickle'"),
        ("<f4", [{"id": "delta", "dtype": "<f4"}], "'delta'"),  # harmless, but not on the list
        ("<U8", [], "'<U8'"),
    ],
)
def test_dtypes_and_codecs_outside_the_allow_list(
    tmp_path: Path, dtype: str, filters: list[object], named: str
) -> None:
    store = _hostile_store(tmp_path / "s.zarr", tmp_path / "ran", dtype=dtype, filters=filters)
    with pytest.raises(ScorePolicyError) as exc:
        load_dataset(store)
    msg = _one_line(exc, "data/obj", named)
    assert all(c in msg for c in ALLOWED_CODECS)
    assert not (tmp_path / "ran").exists()


def test_v3_metadata_is_checked_too(tmp_path: Path) -> None:
    root = tmp_path / "v3.zarr"
    for group in (root, root / "data", root / "meta"):
        _write(group / "zarr.json", {"zarr_format": 3, "node_type": "group", "attributes": {}})
    array = {
        "zarr_format": 3, "node_type": "array", "shape": [4], "data_type": "int64",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    }  # fmt: skip
    _write(root / "meta" / "episode_ends" / "zarr.json", array)
    (root / "meta" / "episode_ends" / "c").mkdir()
    (root / "meta" / "episode_ends" / "c" / "0").write_bytes(np.array([1, 2, 3, 4], "<i8").tobytes())
    hostile = {**array, "data_type": "float32", "codecs": [array["codecs"][0], {"name": "numcodecs.pickle"}]}
    _write(root / "data" / "x" / "zarr.json", hostile)
    with pytest.raises(ScorePolicyError) as exc:
        load_dataset(root)
    _one_line(exc, "data/x", "'numcodecs.pickle'")
    _write(root / "data" / "x" / "zarr.json", {**array, "data_type": "string"})
    with pytest.raises(ScorePolicyError) as exc:
        load_dataset(root)
    _one_line(exc, "data/x", "'string'")
    _write(root / "data" / "x" / "zarr.json", {**array, "data_type": "float32"})
    with pytest.raises(ScorePolicyError) as exc:  # safe now, but its only chunk is absent
        load_dataset(root)
    _one_line(exc, *(("data/x", "rows 0-3") if ZARR_MAJOR >= 3 else ("meta/episode_ends", "zarr >= 3")))


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.9])
def test_truncated_chunk_is_an_error_not_garbage(tmp_path: Path, fraction: float) -> None:
    """blosc decodes a truncated frame from whatever memory follows it: the frame header is checked."""
    store = write_zarr(tmp_path / "t.zarr")
    chunk = store / "data" / "action" / "0.0"
    chunk.write_bytes(chunk.read_bytes()[: int(chunk.stat().st_size * fraction)])
    with pytest.raises(ScorePolicyError) as exc:
        load_dataset(store)
    _one_line(exc, "data/action/0.0", "restore the file")
    assert any("data/action/0.0" in line for line in validate_dataset(store, horizon=2).lines())
