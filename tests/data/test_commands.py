"""`scorepolicy data ...` and training / evaluation on a dataset without a simulator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.data.makers import edit_data_file, shared_so101, write_robomimic, write_v3, write_v21, write_zarr

from scorepolicy.cli import main
from scorepolicy.data.dataset_task import default_obs_keys, detect_task
from scorepolicy.data.formats import load_dataset

TINY = [
    "--train.steps", "30", "--train.batch-size", "32", "--train.warmup-steps", "3", "--train.num-threads", "1",
    "--train.no-progress", "--train.no-tensorboard", "--train.val-every", "10",
    "--policy.horizon", "4", "--policy.n-action-steps", "2", "--policy.mlp.width", "32", "--policy.mlp.n-blocks", "1",
    "--dataset.val-fraction", "0.25",
]  # fmt: skip


def test_info_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_v3(tmp_path / "ds")
    assert main(["data", "info", str(root), "--json", str(tmp_path / "info.json")]) == 0
    out = capsys.readouterr().out
    assert "episodes 4, frames 46" in out and "fps 10" in out and "'push the block'" in out
    assert "observation.state" in out
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["features"]["action"]["shape"] == [2] and info["format"] == "lerobot v3.0"


def test_info_on_so101_names_the_absent_streams(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", str(shared_so101())]) == 0
    out = capsys.readouterr().out
    assert "episodes 4, frames 1492" in out and "fps 30" in out
    assert "observation.images.front, observation.images.top" in out


def test_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_v3(tmp_path / "ds")
    assert main(["data", "validate", str(root), "--horizon", "0"]) == 0
    assert "valid" in capsys.readouterr().out

    def nan(values: np.ndarray) -> np.ndarray:
        values[[0, 30]] = np.nan
        return values

    edit_data_file(root, "action", nan)
    assert main(["data", "validate", str(root), "--horizon", "10"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert sum("NaN/inf" in line for line in lines) == 2 and "problems found" in lines[-1]
    assert any("shorter than the policy's horizon 10" in line for line in lines)
    assert main(["data", "validate", str(tmp_path / "absent")]) == 1


def test_convert_and_plot_refuse_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_robomimic(tmp_path / "d.hdf5")
    out = tmp_path / "v3"
    assert main(["data", "convert", str(src), "--to", "lerobot-v3", "--out", str(out), "--fps", "20"]) == 0
    assert load_dataset(out).attrs["fps"] == 20
    assert main(["data", "convert", str(src), "--out", str(out), "--fps", "20"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err
    png = tmp_path / "fig.png"
    assert main(["data", "plot", str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["data", "plot", str(out), "--out", str(png)]) == 2


def test_task_detection_and_default_observations(tmp_path: Path) -> None:
    assert detect_task(write_zarr(tmp_path / "r.zarr"), None) == "pusht"
    assert detect_task(write_v21(tmp_path / "v21"), None) == "dataset"
    assert detect_task(None, None) == "pusht"
    eps = load_dataset(write_robomimic(tmp_path / "d.hdf5"))
    assert default_obs_keys(eps) == ["observation.object", "observation.robot0_eef_pos"]
    assert default_obs_keys(load_dataset(tmp_path / "v21")) == ["observation.state"]


def test_train_with_data_only_then_eval_points_to_offline_eval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, run = write_v21(tmp_path / "ds"), tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(run), *TINY]) == 0
    meta = json.loads((run / "train_config.json").read_text())
    assert meta["task"] == "dataset" and meta["data_format"] == "lerobot"
    assert meta["obs_keys"] == ["observation.state"] and meta["action_key"] == "action"
    assert json.loads((run / "config.json").read_text())["policy"]["obs_dim"] == 3
    capsys.readouterr()
    assert main(["eval", str(run)]) == 2
    assert "without a simulator" in capsys.readouterr().err
    assert main(["data", "offline-eval", str(run), "--json", str(tmp_path / "off.json")]) == 0
    out = capsys.readouterr().out
    assert "mean action" in out and "score" in out
    result = json.loads((tmp_path / "off.json").read_text())
    assert result["held_out_episodes"] and [r["kind"] for r in result["rows"]] == ["mean-action", "score"]
    assert len(result["rows"][1]["mse_per_dim"]) == 2 and result["n_windows"] > 0


def test_train_refuses_bad_data_with_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_v3(tmp_path / "ds")

    def nan(values: np.ndarray) -> np.ndarray:
        values[[2, 25]] = np.nan
        return values

    edit_data_file(root, "observation.state", nan)
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "2 problems found" in err[0] and len(err) == 3 and "Traceback" not in "".join(err)
    assert not (tmp_path / "run" / "model.safetensors").exists()
