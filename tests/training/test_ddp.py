"""Data-parallel training: 2 gloo ranks on loopback against one process at the same global batch."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.training import ddp_workers

from scorepolicy.api.training import DataConfig, TrainJob, run_training
from scorepolicy.cli import main
from scorepolicy.files import load_tensors
from scorepolicy.models import MLPConfig
from scorepolicy.policies import PolicyConfig
from scorepolicy.training import TrainConfig
from scorepolicy.training.checkpoint import STATE_FILE
from scorepolicy.training.launch import launch_ranks

TOLERANCE = dict(rtol=1e-5, atol=1e-6)
"""Two ranks sum their halves' gradients in another order than one process sums the whole batch, so float32
rounding differs in the last bits (measured: at most 1.5e-8 on any weight after these 20 steps), while
another seed moves the weights by up to 0.83."""


def _job(out: Path, ranks: int, steps: int = 20, seed: int = 0, **train: Any) -> TrainJob:
    policy = PolicyConfig(
        n_obs_steps=2,
        horizon=4,
        n_action_steps=2,
        mlp=MLPConfig(width=32, n_blocks=2, cond_dim=16, sigma_dim=16),
    )
    cfg = dict(steps=steps, batch_size=32, checkpoint_every=10, log_every=5, val_every=10, progress=False)
    cfg.update(train)
    return TrainJob(
        task="obstacles",
        out=out,
        dataset=DataConfig(n_demos=12, val_fraction=0.2),
        policy=policy,
        train=TrainConfig(seed=seed, ranks=ranks, **cfg),  # type: ignore[arg-type]
    )


def _weights(run: Path) -> dict[str, torch.Tensor]:
    """The EMA model and the raw trained weights (from the resumable state)."""
    state = {k: v for k, v in load_tensors(run / STATE_FILE).items() if k.startswith(("model.", "optim."))}
    return {**{f"ema.{k}": v for k, v in load_tensors(run / "model.safetensors").items()}, **state}


def test_two_ranks_match_one_process_and_only_rank_0_writes(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    one = run_training(_job(tmp_path / "one", ranks=1, tensorboard=True))
    two = launch_ranks(
        ddp_workers.audited, (_job(tmp_path / "two", ranks=2, tensorboard=True), str(tmp_path)), 2
    )
    assert two.steps == one.steps == 20
    assert two.losses == pytest.approx(one.losses, rel=1e-4)  # the global batch's loss, every step
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], **TOLERANCE, msg=name)
    other = run_training(_job(tmp_path / "seed1", ranks=1, seed=1))
    assert other.losses != pytest.approx(one.losses, rel=1e-2)  # the tolerance can tell runs apart
    moved = max(
        (_weights(tmp_path / "seed1")[k] - a[k]).abs().max().item() for k in a if k.startswith("model.")
    )
    assert moved > 100 * TOLERANCE["atol"]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert any("model.safetensors" in w for w in rank0) and any("metrics.csv" in w for w in rank0)
    assert any("/tb/" in w for w in rank0) and any("checkpoints" in w for w in rank0)
    assert rank1 == []  # rank 1 writes nothing: no checkpoint, log, TensorBoard event or directory
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )


def test_resume_under_two_ranks_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    steps = 300
    full = run_training(_job(tmp_path / "full", ranks=2, steps=steps, log_every=1))
    with pytest.raises(KeyboardInterrupt, match="at step"):
        launch_ranks(
            ddp_workers.interrupted, (_job(tmp_path / "part", ranks=2, steps=steps, log_every=1), 10), 2
        )
    resumed = run_training(
        dataclasses.replace(_job(tmp_path / "part", ranks=2, steps=steps, log_every=1), resume=True)
    )
    assert 0 < len(resumed.losses) < steps - 10  # it did stop early, and continued from there
    assert resumed.losses == full.losses[-len(resumed.losses) :]
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_cli_ranks_flag_trains_and_checks_the_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["train", "--task", "obstacles", "--dataset.n-demos", "12", "--policy.mlp.width", "32"]
    common += [
        "--policy.horizon",
        "4",
        "--policy.n-action-steps",
        "2",
        "--train.steps",
        "6",
        "--train.log-every",
        "2",
        "--train.no-progress",
    ]
    assert main([*common, "--out", str(tmp_path / "bad"), "--ranks", "3", "--train.batch-size", "32"]) == 2
    assert (
        "--train.batch-size: the global batch (32) is split evenly over --ranks 3" in capsys.readouterr().err
    )
    assert main([*common, "--out", str(tmp_path / "run"), "--ranks", "2", "--train.batch-size", "32"]) == 0
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["train"]["ranks"] == 2 and saved["train"]["batch_size"] == 32
    assert "trained 6 steps" in capsys.readouterr().out


def test_torchrun_runs_the_module_like_any_torch_program(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [
        "--task",
        "obstacles",
        "--dataset.n-demos",
        "12",
        "--policy.mlp.width",
        "32",
        "--policy.horizon",
        "4",
        "--policy.n-action-steps",
        "2",
    ]
    args += [
        "--train.steps",
        "4",
        "--train.batch-size",
        "16",
        "--train.no-progress",
        "--out",
        str(tmp_path / "run"),
    ]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*cmd, "-m", "scorepolicy", "train", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("trained 4 steps") == 1  # rank 0 alone reports
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert (
        json.loads((tmp_path / "run" / "train_config.json").read_text())["train"]["ranks"] == 2
    )  # as --ranks 2 would repeat it
