"""Format detection, load_dataset for every format, robomimic HDF5, conversion between formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.data.makers import edit_data_file, small_episodes, write_robomimic, write_v3, write_v21, write_zarr

from scorepolicy.data.formats import convert_dataset, detect_format, load_dataset
from scorepolicy.data.robomimic import low_dim_obs_keys, read_robomimic
from scorepolicy.errors import ScorePolicyError


def test_detects_each_format(tmp_path: Path) -> None:
    assert detect_format(write_v3(tmp_path / "v3")) == "lerobot"
    assert detect_format(write_v21(tmp_path / "v21")) == "lerobot"
    assert detect_format(write_zarr(tmp_path / "r.zarr")) == "zarr"
    assert detect_format(write_robomimic(tmp_path / "demo.hdf5")) == "robomimic"
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ScorePolicyError, match=r"format not recognised.*--format"):
        detect_format(other)
    with pytest.raises(ScorePolicyError, match="not found"):
        detect_format(tmp_path / "absent")


def test_forced_format_reads_an_hdf5_without_its_suffix(tmp_path: Path) -> None:
    path = write_robomimic(tmp_path / "demo.hdf5")
    renamed = path.rename(tmp_path / "demo.bin")
    assert detect_format(renamed) == "robomimic"  # by signature
    assert load_dataset(renamed, "robomimic").n_episodes == 4
    with pytest.raises(ScorePolicyError):
        load_dataset(renamed, "lerobot")


def test_robomimic_reads_low_dim_obs_actions_rewards_dones(tmp_path: Path) -> None:
    path = write_robomimic(tmp_path / "demo.hdf5")
    assert low_dim_obs_keys(path) == ["object", "robot0_eef_pos"]
    eps = read_robomimic(path)
    assert list(np.diff(np.concatenate([[0], eps.episode_ends]))) == [12, 9, 15, 10]
    assert eps.data["observation.robot0_eef_pos"].dtype == np.float32
    assert eps.data["action"].shape == (46, 2) and eps.data["next.done"].shape == (46,)
    assert "observation.agentview_image" not in eps.data
    only = load_dataset(path, keys=["object"])
    assert set(only.data) == {"observation.object", "action", "next.reward", "next.done"}
    with pytest.raises(ScorePolicyError, match="data/demo_0/obs/missing: missing"):
        load_dataset(path, keys=["missing"])


def test_robomimic_inconsistent_demo_is_a_clean_error(tmp_path: Path) -> None:
    import h5py

    path = write_robomimic(tmp_path / "demo.hdf5")
    with h5py.File(path, "a") as f:
        del f["data/demo_1/actions"]
        f["data/demo_1/actions"] = np.zeros((5, 2))
    with pytest.raises(ScorePolicyError, match=r"data/demo_1: .* has 9 steps but actions have 5"):
        read_robomimic(path)


def test_convert_every_format_to_lerobot_v3_and_back_to_zarr(tmp_path: Path) -> None:
    sources = {
        "zarr": write_zarr(tmp_path / "r.zarr"),
        "robomimic": write_robomimic(tmp_path / "demo.hdf5"),
        "v21": write_v21(tmp_path / "v21"),
    }
    for name, src in sources.items():
        out = convert_dataset(src, "lerobot-v3", tmp_path / f"{name}-v3", fps=10)
        eps = load_dataset(out)
        assert eps.attrs["codebase_version"] == "v3.0" and eps.n_episodes == 4, name
        assert "action" in eps.data and any(k.startswith("observation.") for k in eps.data), name
    zarr_eps = load_dataset(tmp_path / "zarr-v3")
    assert np.array_equal(zarr_eps.data["observation.state"], load_dataset(sources["zarr"]).data["state"])
    back = convert_dataset(tmp_path / "v21-v3", "zarr", tmp_path / "back.zarr")
    assert np.array_equal(load_dataset(back).data["action"], small_episodes().data["action"])


def test_convert_refuses_existing_output_and_unknown_fps(tmp_path: Path) -> None:
    src = write_zarr(tmp_path / "r.zarr")
    with pytest.raises(ScorePolicyError, match="frame rate is unknown; pass --fps"):
        convert_dataset(src, "lerobot-v3", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "taken").mkdir()
    with pytest.raises(ScorePolicyError, match=r"already exists.*--overwrite"):
        convert_dataset(src, "lerobot-v3", tmp_path / "taken", fps=10)
    convert_dataset(src, "lerobot-v3", tmp_path / "taken", fps=10, overwrite=True)
    assert load_dataset(tmp_path / "taken").n_steps == 46


def test_nan_is_refused_with_file_key_and_episode(tmp_path: Path) -> None:
    root = write_v3(tmp_path / "nan")

    def inject(values: np.ndarray) -> np.ndarray:
        values[30, 1] = np.nan
        return values

    edit_data_file(root, "action", inject)
    with pytest.raises(ScorePolicyError, match=r"'action' holds NaN/inf at frame 30 \(episode 2\)"):
        load_dataset(root)
    assert np.isnan(load_dataset(root, finite=False).data["action"][30, 1])
