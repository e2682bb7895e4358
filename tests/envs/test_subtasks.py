"""One subtask of a multi-task suite (`envs.subtasks`): the right seeds and episodes, one-line errors."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from scorepolicy.core.task import StepInfos, Task
from scorepolicy.envs.registry import get_task
from scorepolicy.envs.subtasks import SubtaskEnv, restrict_subtask, subtask_index
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig, evaluate

NAMES = ("lift-v3", "push-v3", "slide-v3")


class SuiteEnv(gym.Env[np.ndarray, np.ndarray]):
    """Three toy tasks behind one env (seed s runs task s mod 3); the observation is [seed, task id];
    success at the first step for task 1 only; records every reset seed it receives."""

    resets: list[int] = []  # noqa: RUF012  (a shared log, read by the tests)

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.seed_, self.index = 0, 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.seed_ = int(seed if seed is not None else 0)
        self.index = self.seed_ % len(NAMES)
        SuiteEnv.resets.append(self.seed_)
        return np.array([self.seed_, self.index], np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs = np.array([self.seed_, self.index], np.float32)
        return obs, 0.0, False, False, {"success": float(self.index == 1), "task": NAMES[self.index]}


def _metrics(infos: StepInfos) -> dict[str, Any]:
    return {"success": float(any(i.get("success") for i in infos)), "task": infos[-1].get("task", "")}


SUITE = Task(
    name="suite",
    obs_dim=2,
    action_dim=1,
    max_steps=3,
    default_seed=0,
    make_env=SuiteEnv,
    dataset_obs=lambda e: np.zeros((0, 2), np.float32),
    dataset_actions=lambda e: np.zeros((0, 1), np.float32),
    episode_metrics=_metrics,
    aggregate_metrics=lambda records: {},
    n_subtasks=3,
    subtask_names=NAMES,
)


class Still:
    """A batch policy that always returns action 0."""

    def reset(self, seed: int | None = None, *, seeds: Any = None) -> None:
        pass

    def select_action(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros((len(obs), 1), np.float32)


def test_restricted_seeds_are_the_suites_episodes_of_that_subtask() -> None:
    task = restrict_subtask(SUITE, "push")  # the name without its version suffix
    assert task.name == "suite:push-v3" and task.n_subtasks == 1 and task.max_steps == SUITE.max_steps
    env = task.make_env(None)
    assert isinstance(env, SubtaskEnv)
    for seed in (0, 1, 7):
        obs, info = env.reset(seed=seed)
        assert info["suite_seed"] == 3 * seed + 1 and obs[0] == 3 * seed + 1 and obs[1] == 1
    assert restrict_subtask(SUITE, None) is SUITE
    assert subtask_index(SUITE, "slide-v3") == 2 and subtask_index(SUITE, "0") == 0


def test_evaluation_of_a_subtask_runs_only_its_episodes() -> None:
    SuiteEnv.resets.clear()
    result = evaluate(
        Still(), restrict_subtask(SUITE, "push-v3"), EvalConfig(episodes=5, seed=10, n_envs=5, progress=False)
    )
    assert result["n_episodes"] == 5 and result["success_rate"] == 1.0
    assert sorted(r["task"] for r in result["episodes"]) == ["push-v3"] * 5
    assert sorted(SuiteEnv.resets) == [3 * s + 1 for s in range(10, 15)]
    assert "per_task" not in result  # one task: no per-task table
    other = evaluate(
        Still(), restrict_subtask(SUITE, "lift-v3"), EvalConfig(episodes=4, seed=10, n_envs=4, progress=False)
    )
    assert other["success_rate"] == 0.0


@pytest.mark.parametrize("bad", ["peg-insert-side", "3", ""])
def test_a_bad_subtask_is_a_one_line_error_naming_the_valid_ones(bad: str) -> None:
    with pytest.raises(ScorePolicyError, match="valid: lift-v3, push-v3, slide-v3") as err:
        restrict_subtask(SUITE, bad)
    assert "\n" not in str(err.value)


def test_a_single_task_has_no_subtasks() -> None:
    with pytest.raises(ScorePolicyError, match="has no subtasks"):
        get_task("obstacles", subtask="reach")
