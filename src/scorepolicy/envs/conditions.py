"""Perturbation conditions: a task's envs run under observation noise, a mid-episode shift, or unseen starts.

`get_task(name, condition=...)` (`envs/registry.py`) returns the task with `apply_condition` applied: the
same task whose `make_env` wraps every env in a `ConditionWrapper`, so evaluation, samplers and the RL
wrappers need no special case. Each task that supports conditions describes how in a `ConditionModel`
(Push-T: `envs/pusht_conditions.py`, the obstacle task: `envs/obstacle_conditions.py`):

- `nominal`: the task unchanged (the very same env object, bit-identical results).
- `obs-noise`: fresh Gaussian noise on every observation the env returns (reset and step); the simulator's
  state, rewards and infos are untouched.
- `block-shift`: after step `step` the block (Push-T) or the agent (obstacle task) is displaced by `scale`;
  that step's info carries `condition_shifted: True` (and `condition_shift_step`).
- `unseen-start`: every reset starts from a state at least `scale` outside the region the demonstrations
  start from (each model documents its region).

All randomness comes from a generator seeded by the env seed of each `reset(seed=...)`, so an episode is
the same for the same seed (a reset without a seed continues the generator).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from scorepolicy.core.task import CONDITION_NAMES, Condition, Task
from scorepolicy.errors import ScorePolicyError

_SALT = 0x5C0DE
"""Mixed into the env seed, so the condition's random stream differs from the env's own."""

NoiseFn = Callable[[np.ndarray, np.random.Generator, float], np.ndarray]
"""noisy(obs, rng, scale) -> the observation the policy sees."""
ShiftFn = Callable[[gym.Env[Any, Any], np.random.Generator, float], "np.ndarray | None"]
"""shift(env, rng, scale) -> the observation after displacing the block/agent (None: no valid shift)."""
StartFn = Callable[[np.random.Generator, float], dict[str, Any]]
"""unseen_start(rng, scale) -> reset options placing the episode outside the demonstrated region."""


@dataclass(frozen=True)
class ConditionModel:
    """How one task's env is perturbed under each condition, with the task's default scales."""

    task: str
    """Name of the task the model belongs to."""
    units: str
    """Unit of the scales (shown in errors and docs)."""
    default_scale: Mapping[str, float]
    """Default `scale` per non-nominal condition."""
    default_shift_step: int
    """block-shift: the default step after which the displacement happens."""
    noisy: NoiseFn
    """obs-noise: the noisy observation."""
    shift: ShiftFn
    """block-shift: displace the block (or agent) in the env and return the new observation."""
    unseen_start: StartFn
    """unseen-start: reset options for a start outside the demonstrated region."""


def condition_model(task_name: str) -> ConditionModel | None:
    """The ConditionModel of a task, None when the task supports only the nominal condition."""
    if task_name == "pusht":
        from scorepolicy.envs.pusht_conditions import PUSHT_CONDITIONS

        return PUSHT_CONDITIONS
    if task_name == "pusht-keypoints":
        from scorepolicy.envs.pusht_conditions import PUSHT_KEYPOINTS_CONDITIONS

        return PUSHT_KEYPOINTS_CONDITIONS
    if task_name == "obstacles":
        from scorepolicy.envs.obstacle_conditions import OBSTACLE_CONDITIONS

        return OBSTACLE_CONDITIONS
    return None


def resolve_condition(
    task_name: str, condition: Condition | str | None, scale: float | None = None
) -> Condition:
    """The condition with the task's defaults filled in (scale, and the step of block-shift); one-line
    errors for an unknown name or a task without that condition."""
    if condition is None or isinstance(condition, str):
        condition = Condition(condition or "nominal", scale)
    elif scale is not None:
        condition = dataclasses.replace(condition, scale=scale)
    if condition.name == "nominal":
        return Condition()
    model = condition_model(task_name)
    if model is None:
        raise ScorePolicyError(
            f"task '{task_name}' runs only the nominal condition; conditions {', '.join(CONDITION_NAMES[1:])} "
            "exist for the tasks pusht, pusht-keypoints and obstacles"
        )
    step = condition.step if condition.name == "block-shift" else None
    if condition.name == "block-shift" and step is None:
        step = model.default_shift_step
    chosen = condition.scale if condition.scale is not None else model.default_scale[condition.name]
    return Condition(condition.name, float(chosen), step)


def check_condition_flags(name: str, scale: float | None, step: int | None) -> None:
    """One-line errors for `--condition NAME --condition-scale X --condition-step N` that do not fit."""
    try:
        Condition(name, scale, step)  # checks the name, the scale and the step
    except ScorePolicyError as exc:
        raise ScorePolicyError(f"--condition: {exc}") from None
    if name == "nominal" and (scale is not None or step is not None):
        raise ScorePolicyError("--condition-scale and --condition-step need a --condition other than nominal")
    if step is not None and name != "block-shift":
        raise ScorePolicyError(f"--condition-step applies to --condition block-shift only, not '{name}'")


def apply_condition(task: Task, condition: Condition | str | None, scale: float | None = None) -> Task:
    """The task whose envs run under `condition` (the task itself for nominal); see the module doc."""
    resolved = resolve_condition(task.name, condition, scale)
    if resolved.name == "nominal":
        return task if task.condition.name == "nominal" else dataclasses.replace(task, condition=resolved)
    if task.condition.name != "nominal":
        raise ScorePolicyError(
            f"task '{task.name}' already runs under condition '{task.condition.name}'; "
            "apply a condition to the nominal task"
        )
    make_env = functools.partial(make_conditioned_env, task.make_env, task.name, resolved)
    return dataclasses.replace(task, make_env=make_env, condition=resolved)


def make_conditioned_env(
    make_env: Callable[[str | None], gym.Env[Any, Any]],
    task_name: str,
    condition: Condition,
    render_mode: str | None = None,
) -> gym.Env[Any, Any]:
    """`make_env(render_mode)` wrapped in a ConditionWrapper (a module-level function, so it pickles)."""
    model = condition_model(task_name)
    if model is None:
        raise ScorePolicyError(f"task '{task_name}' has no condition '{condition.name}'")
    return ConditionWrapper(make_env(render_mode), model, condition)


class ConditionWrapper(gym.Wrapper[Any, Any, Any, Any]):
    """An env perturbed by one (resolved, non-nominal) condition; see the module doc."""

    def __init__(self, env: gym.Env[Any, Any], model: ConditionModel, condition: Condition) -> None:
        super().__init__(env)
        if condition.name == "nominal" or condition.scale is None:
            raise ScorePolicyError(
                "ConditionWrapper needs a resolved non-nominal condition (resolve_condition)"
            )
        self.model, self.condition = model, condition
        self.scale = float(condition.scale)
        self._rng = np.random.default_rng(_SALT)
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset (from an unseen start under unseen-start, unless `options` place the episode themselves)."""
        if seed is not None:
            self._rng = np.random.default_rng([_SALT, int(seed)])
        self._t = 0
        if self.condition.name == "unseen-start" and not options:
            options = self.model.unseen_start(self._rng, self.scale)
        obs, info = self.env.reset(seed=seed, options=options)
        return self._observe(obs), info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env; under block-shift, displace after step `condition.step` (unless the episode ended)."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._t += 1
        if self.condition.name == "block-shift" and self._t == self.condition.step:
            done = terminated or truncated or bool(info.get("is_success") or info.get("success"))
            moved = None if done else self.model.shift(self.env, self._rng, self.scale)
            if moved is not None:
                obs = moved
                info = {**info, "condition_shifted": True, "condition_shift_step": self._t}
        return self._observe(obs), reward, terminated, truncated, info

    def _observe(self, obs: Any) -> Any:
        if self.condition.name != "obs-noise":
            return obs
        return self.model.noisy(np.asarray(obs), self._rng, self.scale)
