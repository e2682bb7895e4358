"""Validation reports every problem, one line each naming file, episode and field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.data.makers import edit_data_file, shared_so101, write_robomimic, write_v3, write_v21, write_zarr

from scorepolicy.data.validate import DataValidationError, validate_dataset


def test_clean_datasets_of_every_format_are_valid(tmp_path: Path) -> None:
    for path in (
        write_v3(tmp_path / "v3"),
        write_v21(tmp_path / "v21"),
        write_zarr(tmp_path / "r.zarr"),
        write_robomimic(tmp_path / "d.hdf5"),
    ):
        report = validate_dataset(path, horizon=8)
        assert report.ok, report.lines()


def test_every_lerobot_problem_is_reported_in_one_pass(tmp_path: Path) -> None:
    root = write_v3(tmp_path / "ds")

    def nan_and_inf(values: np.ndarray) -> np.ndarray:
        values[3, 0], values[40, 1] = np.nan, np.inf  # episodes 0 and 3
        return values

    def swap_frames(values: np.ndarray) -> np.ndarray:
        values[13], values[14] = values[14], values[13]  # inside episode 1 (rows 12..20)
        return values

    data_file = edit_data_file(root, "action", nan_and_inf)
    edit_data_file(root, "frame_index", swap_frames)
    edit_data_file(root, "timestamp", swap_frames)

    def outlier(values: np.ndarray) -> np.ndarray:
        values[25, 0] += 100.0  # episode 2 (rows 21..35)
        return values

    edit_data_file(root, "observation.state", outlier)
    stats_path = root / "meta" / "stats.json"
    stats = json.loads(stats_path.read_text())
    stats["observation.state"]["max"][2] += 5.0
    stats_path.write_text(json.dumps(stats))
    report = validate_dataset(root, horizon=10)
    lines = report.lines()
    assert not report.ok and all("\n" not in line for line in lines)

    def has(*fragments: str) -> bool:
        return any(all(f in line for f in fragments) for line in lines)

    assert has(str(data_file), "episode 0", "'action'", "NaN/inf", "frame 3"), lines
    assert has(str(data_file), "episode 3", "'action'", "NaN/inf"), lines
    assert has("episode 1", "'frame_index'", "not 0..8"), lines
    assert has("episode 1", "'timestamp'", "not strictly increasing"), lines
    assert has("episode 1", "shorter than the policy's horizon 10"), lines
    assert has("stats.json", "'observation.state'", "stats 'max'"), lines
    assert has(str(data_file), "episode 2", "'observation.state'", "stats 'max'[0]"), (
        lines
    )  # per-episode stats


def test_missing_files_columns_and_shape_mismatches(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    root = write_v21(tmp_path / "ds")
    (root / "data" / "chunk-000" / "episode_000002.parquet").unlink()
    path = root / "data" / "chunk-000" / "episode_000001.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["observation.state"]), path)
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"]["action"]["shape"] = [3]
    info["total_frames"] = 7
    (root / "meta" / "info.json").write_text(json.dumps(info))
    lines = validate_dataset(root).lines()
    assert any("episode_000002.parquet: data file missing (episodes 2)" in line for line in lines), lines
    assert any("episode_000001.parquet: 'observation.state': column missing" in line for line in lines), lines
    assert any("'action': shape [2] per frame but meta/info.json declares [3]" in line for line in lines), (
        lines
    )
    assert any("info.json: 'total_frames': 7 but the metadata lists 46" in line for line in lines), lines


def test_zarr_and_robomimic_problems(tmp_path: Path) -> None:
    import h5py
    import zarr

    store = write_zarr(tmp_path / "r.zarr")
    arr = zarr.open_array(str(store / "data" / "action"), mode="r+")
    arr[20, 0] = np.nan
    lines = validate_dataset(store, horizon=11).lines()
    assert any("episode 1: 'action': NaN/inf in 1 frame(s), first at frame 8" in line for line in lines), (
        lines
    )
    assert any("episode 1: 9 frames, shorter than the policy's horizon 11" in line for line in lines), lines
    path = write_robomimic(tmp_path / "d.hdf5")
    with h5py.File(path, "a") as f:
        f["data/demo_2"].attrs["num_samples"] = 99
        del f["data/demo_3/actions"]
    lines = validate_dataset(path).lines()
    assert any("data/demo_2: episode 2: attribute num_samples = 99" in line for line in lines), lines
    assert any("data/demo_3/actions: missing" in line for line in lines), lines


def test_so101_is_valid_and_notes_its_absent_videos() -> None:
    report = validate_dataset(shared_so101(), horizon=16)
    assert report.ok, report.lines()
    notes = [line for line in report.lines() if line.startswith("note: ")]
    assert len(notes) == 2 and all("video files absent" in n for n in notes)


def test_refusal_lists_every_problem_one_per_line(tmp_path: Path) -> None:
    root = write_v3(tmp_path / "ds")

    def nan(values: np.ndarray) -> np.ndarray:
        values[[1, 20]] = np.nan
        return values

    edit_data_file(root, "observation.state", nan)
    report = validate_dataset(root)
    with pytest.raises(DataValidationError) as exc:
        raise DataValidationError(report)
    text = str(exc.value).splitlines()
    assert "2 problems found" in text[0] and len(text) == 3
    assert "episode 0" in text[1] and "episode 1" in text[2]
