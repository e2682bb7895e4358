"""`scorepolicy train --out RUN --resume` alone: a run killed between checkpoints continues bit-exactly."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scorepolicy.cli import main
from scorepolicy.training.checkpoint import STATE_FILE

FLAGS = [
    "--task", "obstacles", "--dataset.n-demos", "8", "--policy.horizon", "8", "--policy.n-action-steps", "4",
    "--policy.mlp.width", "16", "--policy.mlp.n-blocks", "1", "--train.batch-size", "16",
    "--train.steps", "400", "--train.checkpoint-every", "100", "--train.log-every", "1",
    "--train.warmup-steps", "10", "--train.no-progress", "--train.no-tensorboard", "--threads", "1",
]  # fmt: skip


def _logged_steps(run: Path) -> list[int]:
    if not (run / "metrics.csv").exists():
        return []
    with (run / "metrics.csv").open() as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get("step")]


def _kill_between_checkpoints(run: Path) -> None:
    """Start the run in a subprocess and SIGKILL it once it has logged steps past its first checkpoint."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scorepolicy.cli", "train", *FLAGS, "--out", str(run)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while proc.poll() is None and max(_logged_steps(run), default=0) < 130:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"


def test_killed_run_resumed_with_resume_alone_equals_an_uninterrupted_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.set_num_threads(1)
    assert main(["train", *FLAGS, "--out", str(tmp_path / "full")]) == 0
    run = tmp_path / "killed"
    _kill_between_checkpoints(run)
    state_step = _checkpoint_step(run)
    assert 100 <= state_step < 400
    assert max(_logged_steps(run)) > state_step  # rows after the checkpoint, to be cut back
    assert main(["train", "--out", str(run), "--resume"]) == 0
    for name in ("model.safetensors", STATE_FILE):
        full, resumed = load_file(tmp_path / "full" / name), load_file(run / name)
        assert full.keys() == resumed.keys()
        for key in full:
            assert torch.equal(full[key], resumed[key]), (name, key)
    assert _logged_steps(run) == _logged_steps(tmp_path / "full") == list(range(1, 401))


def _checkpoint_step(run: Path) -> int:
    import json

    from safetensors import safe_open

    with safe_open(str(run / STATE_FILE), framework="pt") as f:
        return int(json.loads((f.metadata() or {})["train_state"])["step"])


def test_resume_refuses_flags_that_break_the_continuation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short = [*FLAGS, "--train.steps", "20", "--train.checkpoint-every", "10", "--out", str(tmp_path)]
    assert main(["train", *short]) == 0
    for flag, value in [("--train.batch-size", "8"), ("--policy.horizon", "4"), ("--train.seed", "1"),
                        ("--dataset.n-demos", "9"), ("--denoiser", "transformer")]:  # fmt: skip
        before = (tmp_path / "train_config.json").read_text()
        assert main(["train", "--out", str(tmp_path), "--resume", flag, value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "a resumed run keeps the value" in err, err
        assert (tmp_path / "train_config.json").read_text() == before  # nothing written
    # extending on purpose, and the safe flags, are accepted
    assert main(["train", "--out", str(tmp_path), "--resume", "--train.steps", "25", "--threads", "1"]) == 0
    assert _logged_steps(tmp_path) == list(range(1, 26))


def test_resume_without_a_run_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "no run to resume" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()
