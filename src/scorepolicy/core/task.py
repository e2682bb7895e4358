"""What a task is: an env factory, the observation mapping for its data, and its metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from scorepolicy.core.episodes import Episodes

StepInfos = Sequence[dict[str, Any]]


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
    goal_spec: tuple[int, int] | None = None
    """(n_tasks, goal_dim) of the goal its observations carry at their end (task id, then goal vector);
    policies trained for the task are goal-conditioned on it unless configured otherwise."""
