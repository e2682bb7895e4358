"""What a task is: an env factory, the observation mapping for its data, and its metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import gymnasium as gym
import numpy as np

from scorepolicy.core.episodes import Episodes
from scorepolicy.errors import ScorePolicyError

StepInfos = Sequence[dict[str, Any]]
ConditionName = Literal["nominal", "obs-noise", "block-shift", "unseen-start"]
CONDITION_NAMES: tuple[str, ...] = get_args(ConditionName)


@dataclass(frozen=True)
class Condition:
    """A perturbation the task's envs run under (`scorepolicy.envs.conditions` applies it).

    `nominal` leaves the env untouched; `obs-noise` adds Gaussian noise of std `scale` to the observation
    the policy sees; `block-shift` displaces the block (Push-T) or the agent (obstacle task) by `scale` at
    step `step`; `unseen-start` starts episodes at least `scale` outside the demonstrated region. Scales
    are in the env's own units; None means the task's default.
    """

    name: str = "nominal"
    """One of CONDITION_NAMES."""
    scale: float | None = None
    """Strength in the env's units (pixels for Push-T, the unit square for obstacles); None: the default."""
    step: int | None = None
    """block-shift only: the env step after which the displacement happens; None: the task's default."""

    def __post_init__(self) -> None:
        if self.name not in CONDITION_NAMES:
            raise ScorePolicyError(
                f"unknown condition '{self.name}'; valid conditions: {', '.join(CONDITION_NAMES)}"
            )
        if self.scale is not None and not self.scale >= 0.0:
            raise ScorePolicyError(f"condition '{self.name}': scale must be ≥ 0, got {self.scale!r}")
        if self.step is not None and self.step < 1:
            raise ScorePolicyError(f"condition '{self.name}': step must be ≥ 1, got {self.step!r}")

    def as_dict(self) -> dict[str, Any]:
        """The condition as JSON (name, and scale/step where they apply)."""
        out: dict[str, Any] = {"name": self.name}
        if self.name != "nominal":
            out["scale"] = self.scale
        if self.name == "block-shift":
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Task:
    """A task the policy can be trained and evaluated on.

    Environments made by `make_env` already return the adapted observation: a float32 vector of
    length `obs_dim`, the same mapping `dataset_obs` applies to recorded data, so a policy trained
    on the data sees identical inputs in the simulator. Actions are in the env's own units.
    """

    name: str
    obs_dim: int
    action_dim: int
    max_steps: int
    """Episode step limit used by evaluation."""
    default_seed: int
    """First evaluation seed (Push-T: 100000)."""
    make_env: Callable[[str | None], gym.Env]
    """make_env(render_mode) -> env; render_mode is None or "rgb_array"."""
    dataset_obs: Callable[[Episodes], np.ndarray]
    """Observations (total_steps, obs_dim) float32 from recorded episodes."""
    dataset_actions: Callable[[Episodes], np.ndarray]
    """Actions (total_steps, action_dim) float32 from recorded episodes."""
    episode_metrics: Callable[[StepInfos], dict[str, float]]
    """Per-episode record from the infos of every step (after reset): must contain 'success' (0/1)."""
    aggregate_metrics: Callable[[list[dict[str, Any]]], dict[str, Any]]
    """Task-level aggregates (e.g. mean_score) from the per-episode records."""
    stop_on_success: bool = True
    """End an episode at the first step whose info reports success."""
    behaviour_key: str | None = None
    """Key of the per-episode record (from episode_metrics) holding the episode's behaviour label: an int
    in [0, n_behaviours), or −1 for none. None: the task reports no behaviours (no diversity metrics)."""
    n_behaviours: int = 0
    """Number of distinct behaviours |B| (the log base of the behaviour entropy)."""
    behaviour_names: tuple[str, ...] = ()
    """Readable name of each behaviour, for reports (may be empty)."""
    behaviour_prior: tuple[float, ...] | None = None
    """The demonstrator's behaviour distribution when the task defines it (for KL(π ‖ p_data))."""
    n_subtasks: int = 1
    """Tasks behind one env (multi-task suites: episode seed s runs subtask s mod n_subtasks);
    `scorepolicy eval --episodes N` runs N episodes per subtask."""
    subtask_names: tuple[str, ...] = ()
    """Name of each subtask, in seed order (subtask s mod n_subtasks); empty when there are none (or they
    are unnamed). `envs.subtasks.restrict_subtask` picks one of them by name."""
    goal_spec: tuple[int, int] | None = None
    """(n_tasks, goal_dim) of the goal its observations carry at their end (task id, then goal vector);
    policies trained for the task are goal-conditioned on it unless configured otherwise."""
    condition: Condition = field(default_factory=Condition)
    """The perturbation its envs run under (`get_task(name, condition=...)`); nominal by default."""
    image_shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """Camera key -> (height, width, 3) of the uint8 RGB frames its observations carry; empty for state-only
    tasks. An image task's envs return a dict observation {"state": float32 (obs_dim,), key: uint8 (H, W, 3)
    per camera}; `obs_dim` then counts the state vector only."""
    dataset_images: Callable[[Episodes], dict[str, np.ndarray]] | None = None
    """Camera key -> uint8 frames (total_steps, H, W, 3) from recorded episodes, aligned with `dataset_obs`
    (same rows); None for state-only tasks."""
