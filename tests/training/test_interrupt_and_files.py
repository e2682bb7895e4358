"""Ctrl-C/SIGTERM checkpoints, TensorBoard cut back on resume, atomic snapshots, EMA by name, file modes."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import pytest
import torch
from tests.conftest import tiny_policy, toy_windows
from tests.training.test_loop import _cfg

from scorepolicy.files import atomic_save_tensors, atomic_write_json, load_tensors
from scorepolicy.policies import ScorePolicy
from scorepolicy.training import TrainConfig, train
from scorepolicy.training.checkpoint import STATE_FILE
from scorepolicy.training.loop import TrainingInterrupted, ema_update, save_checkpoint


def _steps(run: Path) -> list[int]:
    return [int(r["step"]) for r in csv.DictReader((run / "metrics.csv").open())]


def _state_step(run: Path) -> int:
    import json

    from safetensors import safe_open

    with safe_open(str(run / STATE_FILE), framework="pt") as f:
        return int(json.loads((f.metadata() or {})["train_state"])["step"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_writes_a_checkpoint_and_resume_is_exact(tmp_path: Path, sig: signal.Signals) -> None:
    torch.set_num_threads(1)
    data = toy_windows()
    full = tiny_policy(data=data)
    train(full, data, _cfg(12, log_every=1, tensorboard=True), tmp_path / "full")
    part = tiny_policy(data=data)
    original, calls = part.compute_loss, [0]

    def signalling(*args: object, **kw: object) -> tuple[torch.Tensor, dict[str, float]]:
        calls[0] += 1
        if calls[0] == 7:  # between the step-5 and step-10 checkpoints
            os.kill(os.getpid(), sig)
        return original(*args, **kw)  # type: ignore[arg-type]

    part.compute_loss = signalling  # type: ignore[method-assign]
    previous = signal.getsignal(sig)
    with pytest.raises(TrainingInterrupted, match="at step 7: checkpoint written"):
        train(part, data, _cfg(12, log_every=1, tensorboard=True), tmp_path / "part")
    assert signal.getsignal(sig) == previous  # the handler is restored
    assert _state_step(tmp_path / "part") == 7  # nothing lost, not just the step-5 checkpoint
    assert sorted(p.name for p in (tmp_path / "part" / "checkpoints").iterdir()) == ["step_0000005"]
    resumed = tiny_policy(data=data)
    result = train(resumed, data, _cfg(12, log_every=1, tensorboard=True), tmp_path / "part", resume=True)
    assert len(result.losses) == 5
    for name, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert _steps(tmp_path / "part") == _steps(tmp_path / "full") == list(range(1, 13))


def test_resume_cuts_metrics_and_tensorboard_back_to_the_checkpoint(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = toy_windows()
    cfg = _cfg(10, log_every=1, tensorboard=True)
    train(tiny_policy(data=data), data, cfg, tmp_path)
    # the run as a crash after its step-5 checkpoint leaves it: state at 5, logs up to 10
    state = (tmp_path / STATE_FILE).read_bytes()
    train(tiny_policy(data=data), data, _cfg(5, log_every=1, tensorboard=True), tmp_path / "at5")
    (tmp_path / STATE_FILE).write_bytes((tmp_path / "at5" / STATE_FILE).read_bytes())
    assert state != (tmp_path / STATE_FILE).read_bytes()
    train(tiny_policy(data=data), data, cfg, tmp_path, resume=True)
    assert _steps(tmp_path) == list(range(1, 11))
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 11))


def test_snapshot_appears_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = toy_windows()
    policy = tiny_policy(data=data)
    train(policy, data, _cfg(5), tmp_path)
    from scorepolicy.training.loop import make_state

    state = make_state(policy, _cfg(5))
    state.step = 10
    real_save = ScorePolicy.save_pretrained

    def failing(self: ScorePolicy, directory: str | Path, state_dict: object = None) -> None:
        if "checkpoints" in str(directory):  # weights written, then the disk fills before the config
            from scorepolicy.files import atomic_save_tensors

            atomic_save_tensors(Path(directory) / "model.safetensors", self.state_dict())
            raise OSError("disk full")
        real_save(self, directory)

    monkeypatch.setattr(ScorePolicy, "save_pretrained", failing)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, state, _cfg(5))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_0000005"]
    monkeypatch.setattr(ScorePolicy, "save_pretrained", real_save)
    save_checkpoint(tmp_path, state, _cfg(5))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000005", "step_0000010"]
    assert ScorePolicy.from_pretrained(tmp_path / "checkpoints" / "step_0000010").cfg.horizon == 4


class _Pair(torch.nn.Module):
    def __init__(self, first: str) -> None:
        super().__init__()
        # the same names, registered in a different order
        for name in (first, "b" if first == "a" else "a"):
            self.add_module(name, torch.nn.Linear(2, 2, bias=False))


def test_ema_is_matched_by_parameter_name_not_position() -> None:
    torch.manual_seed(0)
    model, ema = _Pair("a"), _Pair("b")
    ema.load_state_dict({k: torch.zeros_like(v) for k, v in model.state_dict().items()})
    ema_update(ema, model, 0.5)
    for name, value in model.state_dict().items():
        assert torch.equal(ema.state_dict()[name], 0.5 * value), name
    other = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False))
    with pytest.raises(ValueError, match="names differ"):
        ema_update(other, model, 0.5)


def test_atomic_files_honour_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        atomic_save_tensors(tmp_path / "t.safetensors", {"w": torch.ones(3)})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "t.safetensors").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic_write_json(tmp_path / "b.json", {"x": 1})
        assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    assert torch.equal(load_tensors(tmp_path / "t.safetensors")["w"], torch.ones(3))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("batch_size", 0, "--train.batch-size"),
        ("steps", 0, "--train.steps"),
        ("lr", 0.0, "--train.lr"),
        ("lr", float("nan"), "--train.lr"),
        ("ema_decay", 1.0, "--train.ema-decay"),
        ("beta2", -0.1, "--train.beta2"),
        ("warmup_steps", -1, "--train.warmup-steps"),
        ("min_lr_ratio", 1.5, "--train.min-lr-ratio"),
        ("checkpoint_every", 0, "--train.checkpoint-every"),
        ("num_threads", -1, "--train.num-threads"),
    ],
)
def test_train_config_refuses_out_of_range_values(field: str, value: float, flag: str) -> None:
    from scorepolicy.errors import ScorePolicyError

    with pytest.raises(ScorePolicyError, match=f"^{flag}: must be"):
        TrainConfig(**{field: value})  # type: ignore[arg-type]
