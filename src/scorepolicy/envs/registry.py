"""Task registry: names → Task, with a one-line error listing the valid names."""

from __future__ import annotations

from typing import Literal, get_args

from scorepolicy.core.task import Condition, Task
from scorepolicy.errors import ScorePolicyError

TaskName = Literal["pusht", "pusht-keypoints", "pusht-image", "obstacles", "metaworld-mt10", "target-image"]
TASK_NAMES: tuple[str, ...] = get_args(TaskName)


def get_task(
    name: str,
    condition: Condition | str | None = None,
    condition_scale: float | None = None,
    subtask: str | None = None,
) -> Task:
    """The task called `name` (imports its simulator lazily), its envs run under `condition` (a name or a
    Condition; None or "nominal": unchanged) with `condition_scale` in the env's units (None: the
    task's default); see `scorepolicy.envs.conditions`. `subtask` restricts a multi-task suite to one of
    its tasks (`scorepolicy.envs.subtasks`)."""
    task = _base_task(name)
    if subtask is not None:
        from scorepolicy.envs.subtasks import restrict_subtask

        task = restrict_subtask(task, subtask)
    if condition is None and condition_scale is None:
        return task
    from scorepolicy.envs.conditions import apply_condition

    return apply_condition(task, condition, condition_scale)


def _base_task(name: str) -> Task:
    if name == "pusht":
        from scorepolicy.envs.pusht import PUSHT_TASK

        return PUSHT_TASK
    if name == "pusht-keypoints":
        from scorepolicy.envs.pusht_keypoints import PUSHT_KEYPOINTS_TASK

        return PUSHT_KEYPOINTS_TASK
    if name == "pusht-image":
        from scorepolicy.envs.pusht_image import PUSHT_IMAGE_TASK

        return PUSHT_IMAGE_TASK
    if name == "obstacles":
        from scorepolicy.envs.obstacles import OBSTACLE_TASK

        return OBSTACLE_TASK
    if name == "metaworld-mt10":
        from scorepolicy.envs.metaworld import MT10, metaworld_task

        return metaworld_task(MT10, name)
    if name == "target-image":
        from scorepolicy.envs.target_image import TARGET_IMAGE_TASK

        return TARGET_IMAGE_TASK
    raise ScorePolicyError(f"unknown task '{name}'; valid tasks: {', '.join(TASK_NAMES)}")
