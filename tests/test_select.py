"""`select`: RUN/best is swapped in one step (never missing), and snapshots deleted meanwhile are skipped."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from scorepolicy.api import select as select_module
from scorepolicy.api.runs import install_snapshot
from scorepolicy.api.select import SKIPPED, stage_snapshots
from scorepolicy.cli import main
from scorepolicy.policies import ChunkPolicy
from tests.conftest import tiny_policy


def _run_with_snapshots(run: Path, steps: tuple[int, ...] = (10, 20, 30)) -> Path:
    for step in steps:
        tiny_policy().save_pretrained(run / "checkpoints" / f"step_{step:07d}")
    tiny_policy().save_pretrained(run)
    (run / "train_config.json").write_text(json.dumps({"task": "obstacles"}))
    return run


def test_best_is_never_missing_while_it_is_reinstalled(tmp_path: Path) -> None:
    run = _run_with_snapshots(tmp_path / "run")
    snapshots = sorted((run / "checkpoints").iterdir())
    install_snapshot(snapshots[0], run / "best")
    missing: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if not (run / "best" / "model.safetensors").is_file():
                missing.append(1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(30):
            install_snapshot(snapshots[i % len(snapshots)], run / "best")
    finally:
        stop.set()
        watcher.join()
    assert not missing
    assert (run / "best").is_symlink()
    assert len(list(run.glob(".best-*"))) == 2  # the installed version and the one a reader may still use
    loaded = ChunkPolicy.from_pretrained(run / "best")
    assert loaded.cfg.obs_dim == tiny_policy().cfg.obs_dim
    assert json.loads((run / "best" / "train_config.json").read_text())["task"] == "obstacles"


def test_a_directory_best_from_an_older_select_is_replaced(tmp_path: Path) -> None:
    run = _run_with_snapshots(tmp_path / "run")
    shutil.copytree(run / "checkpoints" / "step_0000010", run / "best")
    install_snapshot(run / "checkpoints" / "step_0000020", run / "best")
    assert (run / "best").is_symlink() and (run / "best" / "model.safetensors").is_file()


def test_snapshots_deleted_while_select_runs_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run_with_snapshots(tmp_path / "run")
    (run / "checkpoints" / "step_0000030" / "model.safetensors").unlink()  # half-removed by rotation
    real_copytree = shutil.copytree

    def rotate_then_copy(src: Path, dst: Path, **kwargs: object) -> object:
        if Path(src).name == "step_0000010":
            shutil.rmtree(src)  # the training run deletes its oldest snapshot just now
        return real_copytree(src, dst)

    monkeypatch.setattr(select_module.shutil, "copytree", rotate_then_copy)
    staging = tmp_path / "staging"
    staging.mkdir()
    copies, skipped = stage_snapshots(run, staging)
    assert [c.name for c in copies] == ["step_0000020"]
    assert [r["snapshot"] for r in skipped] == ["step_0000010", "step_0000030"]
    assert all(r["skipped"] == SKIPPED for r in skipped)
    assert (copies[0] / "model.safetensors").is_file() and (copies[0] / "config.json").is_file()


def test_select_skips_a_vanished_snapshot_and_installs_from_its_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "r"
    train = ["train", "--task", "obstacles", "--out", str(run), "--dataset.n-demos", "6"]
    train += ["--train.steps", "20", "--train.checkpoint-every", "10", "--train.warmup-steps", "2"]
    train += ["--train.no-progress", "--train.no-tensorboard", "--policy.mlp.width", "16"]
    assert main(train) == 0
    real_evaluate_run = select_module.evaluate_run

    def evaluate_then_rotate(snap: Path, *args: object, **kwargs: object) -> object:
        result = real_evaluate_run(snap, *args, **kwargs)  # type: ignore[arg-type]
        shutil.rmtree(run / "checkpoints", ignore_errors=True)  # training rotates every snapshot away
        return result

    (run / "checkpoints" / "step_0000010" / "config.json").unlink()
    monkeypatch.setattr(select_module, "evaluate_run", evaluate_then_rotate)
    assert main(["select", str(run), "--episodes", "2", "--n-envs", "2"]) == 0
    out = capsys.readouterr().out
    assert "step_0000010: skipped" in out
    summary = json.loads((run / "selection.json").read_text())
    assert summary["best"] == "step_0000020" and "provenance" in summary
    assert (run / "best" / "model.safetensors").is_file()  # installed from select's own copy
    assert not list(run.glob(".select-*"))
