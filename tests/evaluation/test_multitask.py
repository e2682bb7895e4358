"""Per-task success of multi-task suites."""

from __future__ import annotations

import pytest

from scorepolicy.evaluation.multitask import per_task_summary
from scorepolicy.evaluation.stats import wilson_interval


def test_per_task_success_with_intervals_and_mean_over_tasks() -> None:
    records = [{"task": "a", "success": 1.0}] * 3 + [{"task": "a", "success": 0.0}]
    records += [{"task": "b", "success": 0.0}] * 2
    records += [{"seed": 7, "error": "RuntimeError: boom"}]  # an errored episode has no task label
    out = per_task_summary(records)
    assert set(out["per_task"]) == {"a", "b"}
    a = out["per_task"]["a"]
    assert a["success_rate"] == 0.75 and a["n"] == 4
    assert a["success_ci"] == pytest.approx(list(wilson_interval(3, 4)))
    assert out["per_task"]["b"]["success_rate"] == 0.0
    assert out["mean_task_success"] == pytest.approx((0.75 + 0.0) / 2)
