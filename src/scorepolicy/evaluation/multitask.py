"""Multi-task suites: success per task with Wilson 95% intervals, and the mean over tasks."""

from __future__ import annotations

from typing import Any

import numpy as np

from scorepolicy.evaluation.stats import wilson_interval


def per_task_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """{'per_task': {task: {success_rate, success_ci, n}}, 'mean_task_success'} from labelled records.

    Errored episodes (no 'task' label) are left out here; the overall summary counts them as failures.
    """
    per_task: dict[str, Any] = {}
    for name in sorted({str(r["task"]) for r in records if "task" in r}):
        rs = [r for r in records if r.get("task") == name]
        k = round(sum(float(r.get("success", 0.0)) for r in rs))
        per_task[name] = {
            "success_rate": k / len(rs),
            "success_ci": list(wilson_interval(k, len(rs))),
            "n": len(rs),
        }
    mean = float(np.mean([v["success_rate"] for v in per_task.values()])) if per_task else 0.0
    return {"per_task": per_task, "mean_task_success": mean}
