"""Task registry: names → Task, with a one-line error listing the valid names."""

from __future__ import annotations

from typing import Literal, get_args

from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError

TaskName = Literal["pusht", "pusht-keypoints", "obstacles", "metaworld-mt10"]
TASK_NAMES: tuple[str, ...] = get_args(TaskName)


def get_task(name: str) -> Task:
    """The task called `name` (imports its simulator lazily)."""
    if name == "pusht":
        from scorepolicy.envs.pusht import PUSHT_TASK

        return PUSHT_TASK
    if name == "pusht-keypoints":
        from scorepolicy.envs.pusht_keypoints import PUSHT_KEYPOINTS_TASK

        return PUSHT_KEYPOINTS_TASK
    if name == "obstacles":
        from scorepolicy.envs.obstacles import OBSTACLE_TASK

        return OBSTACLE_TASK
    if name == "metaworld-mt10":
        from scorepolicy.envs.metaworld import MT10, metaworld_task

        return metaworld_task(MT10, name)
    raise ScorePolicyError(f"unknown task '{name}'; valid tasks: {', '.join(TASK_NAMES)}")
