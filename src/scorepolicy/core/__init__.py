"""The values data/, envs/ and evaluation/ share: `Episodes` (arrays + boundaries) and `Task`."""

from scorepolicy.core.episodes import Episodes
from scorepolicy.core.task import StepInfos, Task

__all__ = ["Episodes", "StepInfos", "Task"]
