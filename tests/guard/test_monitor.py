"""Monitor files: save/load exact, wrong policy and missing calibration refused with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scorepolicy.errors import ScorePolicyError
from scorepolicy.guard import GuardedPolicy, Monitor
from tests.guard.helpers import point_monitor, point_setup


def test_save_load_is_exact(tmp_path: Path) -> None:
    policy, task = point_setup()
    monitor = point_monitor(policy, task)
    monitor.save(tmp_path / "guard")
    loaded = Monitor.load(tmp_path / "guard")
    assert loaded.settings == monitor.settings
    for name in ("rnd", "ace"):
        assert np.array_equal(loaded.thresholds[name], monitor.thresholds[name])
        assert all(
            np.array_equal(a, b)
            for a, b in zip(loaded.calibration_traces[name], monitor.calibration_traces[name])
        )
    assert torch.equal(loaded.cell, monitor.cell)
    z = torch.randn(7, monitor.settings["embedding_dim"], generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.rnd(z), monitor.rnd(z))
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "guard").iterdir())
    rebuilt = loaded.recalibrated()  # thresholds recomputed from the saved traces are the saved ones
    assert all(np.array_equal(rebuilt.thresholds[k], monitor.thresholds[k]) for k in ("rnd", "ace"))


def _one_line(err: pytest.ExceptionInfo[ScorePolicyError], *fragments: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_monitor_of_another_policy_is_refused(tmp_path: Path) -> None:
    policy, task = point_setup()
    monitor = point_monitor(policy, task)
    other, _ = point_setup()
    with torch.no_grad():
        other.denoiser.out.weight.add_(1e-3)
    with pytest.raises(ScorePolicyError) as err:
        GuardedPolicy(other, monitor)
    _one_line(err, "another policy", "guard calibrate")
    policy.cfg.diffusion.nfe = 5
    with pytest.raises(ScorePolicyError) as err:
        GuardedPolicy(policy, monitor)
    _one_line(err, "NFE 3", "NFE 5")


def test_missing_or_foreign_calibration_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ScorePolicyError) as err:
        Monitor.load(tmp_path / "nothing")
    _one_line(err, "no calibrated monitor", "guard calibrate")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "monitor.json").write_text('{"format": "something-else"}')
    (tmp_path / "m" / "monitor.safetensors").write_bytes(b"")
    with pytest.raises(ScorePolicyError) as err:
        Monitor.load(tmp_path / "m")
    _one_line(err, "monitor.json", "not a guard monitor")
