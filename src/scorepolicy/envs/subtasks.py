"""One subtask of a multi-task suite as a task of its own (`restrict_subtask`, `get_task(..., subtask=)`).

A suite's env runs subtask s mod n for episode seed s (`Task.n_subtasks`). The restricted task keeps the
suite's env, observation (with its goal: the task id stays the subtask's) and step limit, and maps its
episode seed s to the suite's seed s·n + j for subtask j. So its seeds 0, 1, 2, … are exactly the
suite's episodes of that subtask (seeds j, n + j, 2n + j, …): `eval --subtask peg-insert-side --seed 0
--episodes 50` runs the goals a full MT10 evaluation from seed 0 gives that task, and two disjoint seed
ranges of the restricted task stay disjoint in the suite.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np

from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError


def subtask_index(task: Task, subtask: str) -> int:
    """The index (seed residue) of `subtask` in the suite: its name, the name without its version suffix
    ('peg-insert-side' for 'peg-insert-side-v3'), or its index; a one-line error naming the valid ones."""
    names = task.subtask_names
    if task.n_subtasks < 2:
        raise ScorePolicyError(f"--subtask {subtask}: the {task.name} task has no subtasks; drop --subtask")
    for i, name in enumerate(names):
        if subtask in (name, name.rsplit("-v", 1)[0]):
            return i
    if subtask.isdigit() and int(subtask) < task.n_subtasks:
        return int(subtask)
    valid = ", ".join(names) if names else f"0..{task.n_subtasks - 1}"
    raise ScorePolicyError(f"--subtask {subtask}: not a subtask of {task.name}; valid: {valid}")


def subtask_name(task: Task, index: int) -> str:
    """The readable name of subtask `index` (its index as text when the suite names none)."""
    return task.subtask_names[index] if task.subtask_names else str(index)


class SubtaskEnv(gym.Wrapper[Any, Any, Any, Any]):
    """A suite env whose episode seed s runs the suite's seed s·n + index (one subtask only)."""

    def __init__(self, env: gym.Env[Any, Any], n_subtasks: int, index: int) -> None:
        super().__init__(env)
        self.n_subtasks, self.index = n_subtasks, index
        self._rng = np.random.default_rng()

    def suite_seed(self, seed: int) -> int:
        """The suite's episode seed of this subtask's seed `seed`."""
        return int(seed) * self.n_subtasks + self.index

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is None:
            seed = int(self._rng.integers(2**31 // self.n_subtasks))
        else:
            self._rng = np.random.default_rng(seed)
        obs, info = self.env.reset(seed=self.suite_seed(seed), options=options)
        return obs, {**info, "suite_seed": self.suite_seed(seed)}


def restrict_subtask(task: Task, subtask: str | None) -> Task:
    """`task` restricted to one of its subtasks (module doc); `task` itself when `subtask` is None."""
    if subtask is None:
        return task
    index = subtask_index(task, subtask)
    make_env, n = task.make_env, task.n_subtasks

    def make(render_mode: str | None) -> gym.Env[Any, Any]:
        return SubtaskEnv(make_env(render_mode), n, index)

    return dataclasses.replace(
        task,
        name=f"{task.name}:{subtask_name(task, index)}",
        make_env=make,
        n_subtasks=1,
        subtask_names=(),
    )
