"""Training loop: determinism, exact resume, atomic checkpoints, logs, schedule."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from tests.conftest import tiny_policy, toy_windows

from scorepolicy.errors import ScorePolicyError
from scorepolicy.policies import ScorePolicy
from scorepolicy.training import TrainConfig, train
from scorepolicy.training.loop import lr_factor


def _cfg(steps: int, **kw: object) -> TrainConfig:
    base = dict(
        steps=steps,
        batch_size=16,
        warmup_steps=3,
        checkpoint_every=5,
        log_every=2,
        val_every=5,
        num_threads=1,
        tensorboard=False,
        progress=False,
        keep_snapshots=2,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_same_seed_same_losses_other_seed_differs(tmp_path: Path) -> None:
    data = toy_windows()
    a = train(tiny_policy(data=data), data, _cfg(8), tmp_path / "a").losses
    b = train(tiny_policy(data=data), data, _cfg(8), tmp_path / "b").losses
    c = train(tiny_policy(data=data), data, _cfg(8, seed=1), tmp_path / "c").losses
    assert a == b and a != c and len(a) == 8


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path: Path) -> None:
    data = toy_windows()
    full = tiny_policy(data=data)
    train(full, data, _cfg(12), tmp_path / "full", val_data=data)
    # the same run crashes at its 8th step, after the step-5 checkpoint
    part = tiny_policy(data=data)
    original, calls = part.compute_loss, [0]

    def crashing(*args: object, **kw: object) -> tuple[torch.Tensor, dict[str, float]]:
        calls[0] += 1
        if calls[0] == 8:
            raise RuntimeError("simulated crash")
        return original(*args, **kw)  # type: ignore[arg-type]

    part.compute_loss = crashing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(part, data, _cfg(12), tmp_path / "part", val_data=data)
    resumed = tiny_policy(data=data)
    result = train(resumed, data, _cfg(12), tmp_path / "part", val_data=data, resume=True)
    assert len(result.losses) == 7
    for (name, p_full), p_res in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p_full, p_res), name
    ema_full = ScorePolicy.from_pretrained(tmp_path / "full").state_dict()
    ema_res = ScorePolicy.from_pretrained(tmp_path / "part").state_dict()
    assert all(torch.equal(ema_full[k], ema_res[k]) for k in ema_full)
    # the crashed run had logged step 6 after its step-5 checkpoint: the resumed run logs it once
    steps = [int(r["step"]) for r in csv.DictReader((tmp_path / "part" / "metrics.csv").open())]
    assert steps == [int(r["step"]) for r in csv.DictReader((tmp_path / "full" / "metrics.csv").open())]
    assert steps == [2, 4, 5, 6, 8, 10, 12]


def test_schedule_shape_warmup_then_cosine() -> None:
    cfg = _cfg(12)
    assert lr_factor(0, cfg) == pytest.approx(1 / 3)
    assert lr_factor(2, cfg) == pytest.approx(1.0)
    assert lr_factor(12, cfg) == pytest.approx(0.0, abs=1e-9)
    assert lr_factor(7, cfg) < lr_factor(4, cfg)


def test_run_interrupted_in_warmup_resumes_on_the_same_schedule(tmp_path: Path) -> None:
    """A run that crashes during warm-up (after its step-2 checkpoint) logs, once resumed, the same
    learning rate at every step as the uninterrupted run: the schedule restarts at the checkpoint's step."""
    data = toy_windows()
    cfg = _cfg(10, warmup_steps=6, checkpoint_every=2, log_every=1)
    train(tiny_policy(data=data), data, cfg, tmp_path / "full")
    part = tiny_policy(data=data)
    original, calls = part.compute_loss, [0]

    def crashing(*args: object, **kw: object) -> tuple[torch.Tensor, dict[str, float]]:
        calls[0] += 1
        if calls[0] == 4:
            raise RuntimeError("simulated crash")
        return original(*args, **kw)  # type: ignore[arg-type]

    part.compute_loss = crashing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(part, data, cfg, tmp_path / "part")
    train(tiny_policy(data=data), data, cfg, tmp_path / "part", resume=True)

    def logged_lr(run: Path) -> list[tuple[int, float]]:
        rows = csv.DictReader((run / "metrics.csv").open())
        return [(int(r["step"]), float(r["lr"])) for r in rows]

    full, resumed = logged_lr(tmp_path / "full"), logged_lr(tmp_path / "part")
    assert [s for s, _ in full] == list(range(1, 11))
    assert resumed == full
    assert full[0][1] < full[4][1]  # still warming up at the crash


def test_run_directory_contents_and_logs(tmp_path: Path) -> None:
    data = toy_windows()
    train(tiny_policy(data=data), data, _cfg(10), tmp_path, val_data=data)
    names = {p.name for p in tmp_path.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "train_config.json",
        "train_state.safetensors",
        "metrics.csv",
    } <= names
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000005", "step_0000010"]
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 4, 5, 6, 8, 10]
    assert all(float(r["loss"]) > 0 for r in rows if r["loss"])
    assert rows[-1]["val_loss"] != ""
    loaded = ScorePolicy.from_pretrained(tmp_path / "checkpoints" / "step_0000010")
    assert loaded.cfg.horizon == 4


def test_training_reduces_the_loss(tmp_path: Path) -> None:
    data = toy_windows()
    result = train(tiny_policy(data=data), data, _cfg(150, lr=3e-3, batch_size=64, log_every=50), tmp_path)
    assert sum(result.losses[-20:]) / 20 < 0.8 * sum(result.losses[:20]) / 20


def test_resume_without_state_is_a_clear_error(tmp_path: Path) -> None:
    data = toy_windows()
    with pytest.raises(ScorePolicyError, match="no training state to resume from"):
        train(tiny_policy(data=data), data, _cfg(3), tmp_path, resume=True)
