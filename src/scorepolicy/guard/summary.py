"""Alarm rates of a guarded evaluation: on successful and on failed episodes, each with a Wilson interval."""

from __future__ import annotations

from typing import Any

from scorepolicy.evaluation.stats import wilson_interval


def alarm_rates(records: list[dict[str, Any]]) -> dict[str, Any]:
    """`alarm_rate_on_successes` / `alarm_rate_on_failures` (None without such episodes) with their 95%
    Wilson intervals (`..._ci`) and counts, over episodes that carry an `alarm` and did not error."""
    scored = [r for r in records if "alarm" in r and "error" not in r]
    out: dict[str, Any] = {}
    for name, wanted in (("successes", True), ("failures", False)):
        group = [r for r in scored if (float(r.get("success", 0.0)) > 0.5) == wanted]
        alarms = sum(bool(r["alarm"]) for r in group)
        out[f"alarm_rate_on_{name}"] = alarms / len(group) if group else None
        out[f"alarm_rate_on_{name}_ci"] = list(wilson_interval(alarms, len(group))) if group else None
        out[f"n_alarms_on_{name}"] = alarms
        out[f"n_{name}_monitored"] = len(group)
    return out
