"""The command line: user errors are one line on stderr with exit status 2, and nothing is overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scorepolicy.cli import main
from scorepolicy.core.episodes import Episodes
from scorepolicy.data.zarr_replay import write_replay_zarr
from tests.conftest import tiny_policy


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err
    return err


def _pusht_like_zarr(path: Path, nan: bool = False) -> Path:
    rng = np.random.default_rng(0)
    state = rng.uniform(50, 450, size=(40, 5)).astype(np.float32)
    action = rng.uniform(50, 450, size=(40, 2)).astype(np.float32)
    if nan:
        action[25, 0] = np.nan
    write_replay_zarr(Episodes({"state": state, "action": action}, np.array([20, 40])), path)
    return path


def test_train_without_data_says_which_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--task", "pusht", "--out", str(tmp_path / "run")])
    _one_line_error(capsys, code, "--data PATH")


def test_train_on_missing_or_malformed_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["train", "--task", "pusht", "--data", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "r")]
    )
    _one_line_error(capsys, code, "missing.zarr")
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / "junk.txt").write_text("not a zarr")
    code = main(["train", "--task", "pusht", "--data", str(bad), "--out", str(tmp_path / "r")])
    _one_line_error(capsys, code, "bad.zarr")


def test_nan_actions_are_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _pusht_like_zarr(tmp_path / "nan.zarr", nan=True)
    code = main(["train", "--task", "pusht", "--data", str(data), "--out", str(tmp_path / "r")])
    _one_line_error(capsys, code, "action")
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_existing_run_is_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _pusht_like_zarr(tmp_path / "ok.zarr")
    args = [
        "train",
        "--task",
        "pusht",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "r"),
        "--train.steps",
        "2",
    ]
    args += [
        "--train.no-progress",
        "--train.no-tensorboard",
        "--policy.mlp.width",
        "16",
        "--dataset.val-fraction",
        "0",
    ]
    assert main(args) == 0
    capsys.readouterr()
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    _one_line_error(capsys, main(args), "--resume")
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before
    assert main([*args[:-1], "0", "--resume", "--train.steps", "3"]) == 0


def test_eval_and_latency_on_broken_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_error(capsys, main(["eval", str(tmp_path / "nope")]), "no such run directory")
    run = tmp_path / "run"
    tiny_policy().save_pretrained(run)
    _one_line_error(capsys, main(["eval", str(run)]), "train_config.json")
    (run / "train_config.json").write_text(json.dumps({"task": "pusht"}))
    (run / "model.safetensors").unlink()
    _one_line_error(capsys, main(["latency", str(run)]), "model.safetensors")


def test_latency_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    tiny_policy().save_pretrained(run)
    assert main(["latency", str(run), "--repeats", "5", "--json", str(tmp_path / "lat.json")]) == 0
    result = json.loads((tmp_path / "lat.json").read_text())
    assert result["ms_per_chunk"] > 0 and result["threads"] == 1 and result["batch"] == 1
    assert "ms per chunk" in capsys.readouterr().out


def test_unknown_task_lists_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "--task", "walker"])
    assert e.value.code == 2
    assert "pusht" in capsys.readouterr().err


def test_select_installs_the_best_snapshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`select` rolls out every snapshot on validation seeds and installs the best as RUN/best."""
    run = tmp_path / "r"
    train = ["train", "--task", "obstacles", "--out", str(run), "--dataset.n-demos", "10"]
    train += ["--train.steps", "30", "--train.checkpoint-every", "10", "--train.warmup-steps", "5"]
    train += ["--train.no-progress", "--train.no-tensorboard", "--policy.mlp.width", "32"]
    assert main(train) == 0
    assert main(["select", str(run), "--episodes", "6", "--seed", "7", "--metric", "success_rate"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((run / "selection.json").read_text())
    rows = summary["snapshots"]
    assert [r["snapshot"] for r in rows] == ["step_0000010", "step_0000020", "step_0000030"]
    best = max(rows, key=lambda r: r["success_rate"])
    assert summary["best"] == best["snapshot"] and "<- best" in out
    assert summary["first_seed"] == 7 and summary["episodes"] == 6
    chosen = run / "checkpoints" / best["snapshot"] / "model.safetensors"
    assert (run / "best" / "model.safetensors").read_bytes() == chosen.read_bytes()
    assert main(["eval", str(run / "best"), "--episodes", "2", "--no-latency"]) == 0  # task known
    assert main(["select", str(run), "--episodes", "2"]) == 0  # re-selection replaces best/ whole
    installed = {p.name for p in (run / "best").iterdir()}
    assert installed == {p.name for p in chosen.parent.iterdir()} | {"train_config.json"}
    assert not list(run.glob(".best*"))  # no staging left behind


def test_select_without_snapshots_says_how_to_keep_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    tiny_policy().save_pretrained(run)
    (run / "train_config.json").write_text(json.dumps({"task": "obstacles"}))
    _one_line_error(capsys, main(["select", str(run)]), "keep-snapshots")
