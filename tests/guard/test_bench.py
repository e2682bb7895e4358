"""Choosing each rule's window and threshold style on validation episodes (`guard.bench.select_settings`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from scorepolicy.guard.bench import GUARANTEED_STYLES, RULES, rule_metrics, select_settings
from scorepolicy.guard.monitor import Monitor
from tests.guard.helpers import point_monitor, point_setup

WINDOWS = (1, 4, 16)


def _traces(rng: np.random.Generator, n: int, shift: float) -> list[np.ndarray]:
    """n episodes of 20 decisions, scores uniform on [0, 1]; with a shift, raised by it but kept under 0.9:
    such an episode never beats a success's maximum (about 0.99), only its sum over many decisions does."""
    u = [rng.uniform(0, 1, 20) for _ in range(n)]
    return [np.minimum(x + shift, 0.9) for x in u] if shift else u


def _records(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(2 * n):
        fail = i % 2 == 1
        rnd, ace = _traces(rng, 2, 0.3 if fail else 0.0)
        scores = {"rnd": rnd.tolist(), "ace": ace.tolist(), "steps": list(range(0, 160, 8))}
        out.append({"seed": i, "success": 0.0 if fail else 1.0, "length": 160, "guard_scores": scores})
    return out


def _synthetic_monitor(rng: np.random.Generator) -> Monitor:
    policy, task = point_setup()
    base = point_monitor(policy, task)  # its RND and cell are not used: alarms read only the traces
    held = {k: _traces(rng, 29, 0.0) for k in ("rnd", "ace")}
    fit = {k: _traces(rng, 29, 0.0) for k in ("rnd", "ace")}
    return dataclasses.replace(base, calibration_traces=held, fit_traces=fit).recalibrated(
        delta=0.1, window=1
    )


def test_a_shift_only_long_windows_see_is_chosen_on_validation_and_holds_on_test() -> None:
    rng = np.random.default_rng(0)
    monitor = _synthetic_monitor(rng)
    validation, test = _records(rng, 40), _records(rng, 40)
    chosen = select_settings(monitor, validation, WINDOWS)
    assert set(chosen) == set(RULES)
    for rule, pick in chosen.items():
        assert pick["window"] == 16 and pick["style"] in GUARANTEED_STYLES, (rule, pick)
        assert pick["accuracy"] > 0.8
    metrics = rule_metrics(monitor, test, chosen)
    plain = rule_metrics(monitor, test)  # the monitor's own window 1 cannot see the shift
    for rule in RULES:
        assert metrics[rule]["accuracy"] > 0.8 > 0.6 > plain[rule]["accuracy"]


def test_ties_go_to_the_smaller_window_and_the_earlier_style() -> None:
    rng = np.random.default_rng(1)
    monitor = _synthetic_monitor(rng)
    same = [r | {"success": 1.0} for r in _records(rng, 5)]  # no failures: accuracy undefined everywhere
    chosen = select_settings(monitor, same, WINDOWS)
    assert all((c["window"], c["style"]) == (1, GUARANTEED_STYLES[0]) for c in chosen.values())
