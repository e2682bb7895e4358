"""The shared RL infrastructure: base copy with hash check, RNG state round trip, method registry, curves."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.rl.conftest import make_reach_task, save_base_run

from scorepolicy.errors import ScorePolicyError
from scorepolicy.rl.common import (
    METHODS,
    copy_base,
    get_method,
    load_verified_base,
    rng_state,
    set_rng_state,
    write_improved_config,
)
from scorepolicy.rl.curves import Curve, CurveConfig


def test_base_copy_is_verified_by_its_hash(tmp_path: Path, bimodal_base) -> None:
    base_run = save_base_run(bimodal_base, tmp_path / "base_run")
    out = tmp_path / "improved"
    sha = copy_base(base_run, out)
    write_improved_config(out, "dsrl", {}, "success", bimodal_base, sha)
    assert (out / "train_config.json").is_file()
    loaded = load_verified_base(out)
    for k, v in bimodal_base.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    weights = out / "base" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ScorePolicyError, match="sha256 does not match"):
        load_verified_base(out)


def test_missing_base_weights_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(ScorePolicyError, match="base weights missing"):
        copy_base(tmp_path / "run", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_rng_state_round_trip() -> None:
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    state = rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


def test_unknown_method_is_one_line_error() -> None:
    with pytest.raises(ScorePolicyError, match="unknown method 'ppo'"):
        get_method("ppo")
    assert "dsrl" in METHODS and "residual" in METHODS


def test_curve_points_use_the_project_evaluation_and_leave_rng_alone(tmp_path: Path, bimodal_base) -> None:
    curve = Curve(tmp_path, make_reach_task(), CurveConfig(episodes=20, seed=0, n_envs=10))
    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    result = curve.point(bimodal_base.optimize_for_inference(), 0)
    assert torch.equal(torch.rand(2), expected)
    curve.point(bimodal_base, 100)
    rows = curve.rows()
    assert [int(r["env_step"]) for r in rows] == [0, 100]
    assert float(rows[0]["success_rate"]) == result["success_rate"]
    assert float(rows[0]["success_lo"]) <= result["success_rate"] <= float(rows[0]["success_hi"])
    curve.truncate(50)
    assert [int(r["env_step"]) for r in curve.rows()] == [0]
    curve.close()
    assert any((tmp_path / "tb").iterdir())
