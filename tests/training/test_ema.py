"""EMA schedules: Diffusion Policy's power warm-up (values, use in the loop, exact resume) and the default."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.conftest import tiny_policy, toy_windows

from scorepolicy.cli import main, parse_train
from scorepolicy.errors import ScorePolicyError
from scorepolicy.policies import ScorePolicy
from scorepolicy.training import TrainConfig, train
from scorepolicy.training.ema import constant_ema_decay, ema_decay, power_ema_decay


def _cfg(steps: int, **kw: object) -> TrainConfig:
    base = dict(
        steps=steps,
        batch_size=16,
        warmup_steps=3,
        checkpoint_every=4,
        log_every=2,
        val_every=4,
        num_threads=1,
        tensorboard=False,
        progress=False,
        keep_snapshots=1,
        ema_schedule="power",
        ema_decay=0.9999,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_power_decay_values_follow_dps_formula() -> None:
    """decay(n) = 1 − (1 + (n − 2) / inv_gamma)^(−power), clipped; 0 for the first two updates."""
    dp = _cfg(1)
    assert [ema_decay(n, dp) for n in (1, 2)] == [0.0, 0.0]
    assert ema_decay(3, dp) == pytest.approx(1 - 2**-0.75, abs=1e-15)  # 0.40539644...
    assert ema_decay(3, dp) == pytest.approx(0.4053964424986395, abs=1e-15)
    assert ema_decay(12, dp) == pytest.approx(1 - 11**-0.75, abs=1e-15)
    assert ema_decay(10_002, dp) == pytest.approx(1 - 10_001**-0.75, abs=1e-15)  # 0.99900
    assert ema_decay(215_446, dp) == pytest.approx(0.9999, abs=1e-9)  # the cap is reached near 215 k
    assert ema_decay(10**7, dp) == 0.9999  # clipped to the maximum (ema_decay)
    slow = _cfg(1, ema_power=2 / 3, ema_inv_gamma=10.0, ema_min_decay=0.1)
    assert ema_decay(12, slow) == pytest.approx(1 - 2 ** (-2 / 3), abs=1e-15)  # e / inv_gamma = 1
    assert ema_decay(3, slow) == 0.1  # 1 − 1.1^(−2/3) = 0.062 is raised to the minimum
    assert ema_decay(2, slow) == 0.0  # still a copy before the warm-up starts
    values = [power_ema_decay(n) for n in range(1, 3000)]
    assert values == sorted(values) and max(values) < 0.9999


def test_default_schedule_is_unchanged() -> None:
    default = TrainConfig()
    assert (default.ema_schedule, default.ema_decay) == ("constant", 0.999)
    for n in (1, 2, 8, 100, 10_000):
        assert ema_decay(n, default) == min(0.999, (1 + n) / (10 + n)) == constant_ema_decay(n, 0.999)


def test_loop_applies_the_schedule_from_the_restored_step(tmp_path: Path) -> None:
    """Two steps: the EMA is a copy of the weights (decay 0); one more, resumed: 0.405·EMA + 0.595·weights."""
    data = toy_windows()
    policy = tiny_policy(data=data)
    train(policy, data, _cfg(2), tmp_path)
    ema2 = ScorePolicy.from_pretrained(tmp_path).state_dict()
    names = [n for n, _ in policy.named_parameters()]
    for name in names:
        assert torch.equal(ema2[name], policy.state_dict()[name]), name
    resumed = tiny_policy(data=data)
    train(resumed, data, _cfg(3), tmp_path, resume=True)
    ema3, weights3 = ScorePolicy.from_pretrained(tmp_path).state_dict(), resumed.state_dict()
    d = 1 - 2**-0.75
    assert any(not torch.equal(ema3[name], weights3[name]) for name in names)  # no longer a copy
    for name in names:
        torch.testing.assert_close(
            ema3[name], d * ema2[name] + (1 - d) * weights3[name], rtol=1e-6, atol=1e-7
        )


def test_resumed_power_schedule_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    data = toy_windows()
    full = tiny_policy(data=data)
    train(full, data, _cfg(10), tmp_path / "full")
    train(tiny_policy(data=data), data, _cfg(4), tmp_path / "part")  # stops after its step-4 checkpoint
    resumed = tiny_policy(data=data)
    result = train(resumed, data, _cfg(10), tmp_path / "part", resume=True)
    assert len(result.losses) == 6
    for (name, p_full), p_res in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p_full, p_res), name
    ema_full = ScorePolicy.from_pretrained(tmp_path / "full").state_dict()
    ema_res = ScorePolicy.from_pretrained(tmp_path / "part").state_dict()
    assert all(torch.equal(ema_full[k], ema_res[k]) for k in ema_full)
    # and the schedule mattered: the default schedule gives another EMA from the same weights
    constant = tiny_policy(data=data)
    train(constant, data, _cfg(10, ema_schedule="constant", ema_decay=0.999), tmp_path / "constant")
    ema_constant = ScorePolicy.from_pretrained(tmp_path / "constant").state_dict()
    assert any(not torch.equal(ema_full[k], ema_constant[k]) for k in ema_full)


def test_flags_parse_validate_and_stay_fixed_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = parse_train(
        ["--train.ema-schedule", "power", "--train.ema-decay", "0.9999", "--train.ema-power", "0.7"]
    )
    assert (job.train.ema_schedule, job.train.ema_decay, job.train.ema_power) == ("power", 0.9999, 0.7)
    for field, value in (("ema_power", 0.0), ("ema_inv_gamma", -1.0), ("ema_min_decay", 0.9995)):
        with pytest.raises(ScorePolicyError, match=rf"--train\.{field.replace('_', '-')}"):
            TrainConfig(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(ScorePolicyError, match=r"--train\.ema-schedule"):
        TrainConfig(ema_schedule="linear")  # type: ignore[arg-type]
    out = tmp_path / "run"
    args = ["train", "--task", "obstacles", "--out", str(out), "--dataset.n-demos", "6", "--train.steps", "2"]
    args += ["--train.batch-size", "8", "--train.ema-schedule", "power", "--train.no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--train.ema-schedule", "constant"]) == 2
    assert "--train.ema-schedule: a resumed run keeps the value" in capsys.readouterr().err
