"""Meta-World (v3 API) tasks for goal-conditioned multi-task policies: env, scripted-expert demos, task.

One env serves a list of Meta-World tasks: episode seed s runs task s mod n on a goal (object and
target positions) drawn by the env's own sampler from a generator seeded with s, so demonstrations
(seeds from DEMO_SEED_BASE) and evaluations (seeds from 0) never share a goal.

Observation (40 numbers): Meta-World's 39-D observation without its goal (36: hand, gripper, objects,
and the previous frame of these), then the task id, then the goal position (3). A policy with
goal.n_tasks = n, goal.goal_dim = 3 and goal.from_observation reads the last four as its goal.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from scorepolicy.core.episodes import Episodes
from scorepolicy.core.task import StepInfos, Task
from scorepolicy.errors import ScorePolicyError

MT10 = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)
"""The MT10 benchmark's tasks, in Meta-World's order (task ids 0..9)."""
OBS_DIM = 40
ACTION_DIM = 4
DEMO_SEED_BASE = 10_000_000
"""Demonstration episode seeds start here; evaluation seeds start at 0."""


def _metaworld() -> Any:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering
    try:
        import metaworld
        import metaworld.policies
    except ImportError as e:
        raise ScorePolicyError(
            "Meta-World is not installed; run: pip install 'scorepolicy[metaworld]' "
            "(metaworld==3.1.1 with mujoco==3.3.0, in one pip command)"
        ) from e
    return metaworld


def resolve_tasks(names: str | Sequence[str]) -> tuple[str, ...]:
    """'mt10', 'mt50', a comma-separated list or a sequence of Meta-World v3 task names, checked."""
    if isinstance(names, str) and names.lower() == "mt10":
        return MT10
    valid = tuple(sorted(_metaworld().policies.ENV_POLICY_MAP))
    if isinstance(names, str):
        if names.lower() == "mt50":
            return valid
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise ScorePolicyError(
            f"unknown Meta-World task '{unknown[0] if unknown else ''}'; valid: mt10, mt50, or any of {', '.join(valid)}"
        )
    return tuple(names)


@functools.lru_cache(maxsize=64)
def _benchmark(name: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _metaworld().MT1(name, seed=0)


def make_task_env(name: str, render_mode: str | None = None) -> Any:
    """A Meta-World env for one task whose goals are sampled at every reset from its seeded generator."""
    mt1 = _benchmark(name)
    env = mt1.train_classes[name](render_mode=render_mode, camera_name="corner2" if render_mode else None)
    env.set_task(mt1.train_tasks[0])
    env._freeze_rand_vec = False  # sample a fresh goal at each reset …
    env.seeded_rand_vec = True  # … from env.np_random, which reset seeds
    return env


_POOL: dict[tuple[str, str | None], list[Any]] = {}
"""Idle Meta-World envs by (task, render mode): building one parses its MuJoCo XML (0.3-1 s), so the envs
of finished evaluation waves are kept for the next wave instead of being rebuilt."""


def _acquire(name: str, render_mode: str | None) -> Any:
    idle = _POOL.setdefault((name, render_mode), [])
    if idle:
        return idle.pop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_task_env(name, render_mode)


class MetaWorldEnv(gym.Env[np.ndarray, np.ndarray]):
    """Several Meta-World tasks behind one gymnasium env; seed s runs task s mod n on goal seed s."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}  # noqa: RUF012  (gymnasium declares it)

    def __init__(self, tasks: Sequence[str], render_mode: str | None = None) -> None:
        self.tasks = tuple(tasks)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self._envs: dict[str, Any] = {}
        self._env: Any = None
        self._task_index = 0

    def _get(self, name: str) -> Any:
        if name not in self._envs:
            self._envs[name] = _acquire(name, self.render_mode)
        return self._envs[name]

    def close(self) -> None:
        """Return the task envs to the pool of idle envs (they are reset before any reuse)."""
        for name, env in self._envs.items():
            _POOL.setdefault((name, self.render_mode), []).append(env)
        self._envs.clear()
        self._env = None

    def _obs(self, raw: np.ndarray) -> np.ndarray:
        return np.concatenate([raw[:36], [self._task_index], raw[36:39]]).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        s = int(self.np_random.integers(2**31)) if seed is None else int(seed)
        self._task_index = s % len(self.tasks)
        name = self.tasks[self._task_index]
        self._env = self._get(name)
        self._env.np_random = np.random.default_rng(s)
        raw, _ = self._env.reset()
        info = {"task": name, "task_index": self._task_index, "goal": np.asarray(self._env._target_pos)}
        return self._obs(raw), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        raw, reward, terminated, truncated, info = self._env.step(a)
        out = {"success": float(info["success"]), "task": self.tasks[self._task_index]}
        return self._obs(raw), float(reward), bool(terminated), bool(truncated), out

    def render(self) -> Any:
        return self._env.render() if self._env is not None else None

    def expert_action(self, obs: np.ndarray) -> np.ndarray:
        """The task's scripted Meta-World expert on the env's current raw observation."""
        name = self.tasks[self._task_index]
        raw = np.concatenate([obs[:36], obs[37:40]]).astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the experts warn that their gains exceed the action box
            action = _expert(name).get_action(raw)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _expert(name: str) -> Any:
    return _metaworld().policies.ENV_POLICY_MAP[name]()


def generate_metaworld_demos(
    tasks: Sequence[str],
    episodes_per_task: int,
    *,
    seed: int = 0,
    max_steps: int = 500,
    progress: bool = True,
) -> tuple[Episodes, dict[str, dict[str, float]]]:
    """Successful scripted-expert episodes per task (recorded up to the first success) and expert stats.

    Returns the episodes ('obs' (N, 40), 'action' (N, 4), 'task_index' (N,), 'goal' (N, 3); attrs
    'tasks') and per task: attempts, successes and the expert's success rate.
    """
    if episodes_per_task < 1:
        raise ScorePolicyError(f"episodes per task must be ≥ 1, got {episodes_per_task}")
    env = MetaWorldEnv(tasks)
    chunks: dict[str, list[np.ndarray]] = {"obs": [], "action": [], "task_index": [], "goal": []}
    ends: list[int] = []
    stats = {name: {"attempts": 0.0, "successes": 0.0} for name in tasks}
    base = DEMO_SEED_BASE + seed * 1_000_000
    bar = tqdm(total=episodes_per_task * len(tasks), desc="expert demos", disable=not progress)
    for j, name in enumerate(tasks):
        attempt = 0
        while stats[name]["successes"] < episodes_per_task:
            if attempt >= 3 * episodes_per_task:
                raise ScorePolicyError(
                    f"{name}: the scripted expert succeeded too rarely; check the metaworld install"
                )
            episode = _expert_episode(env, base + attempt * len(tasks) + j, max_steps)
            attempt += 1
            stats[name]["attempts"] += 1
            if episode is None:
                continue
            stats[name]["successes"] += 1
            for key, arr in episode.items():
                chunks[key].append(arr)
            ends.append((ends[-1] if ends else 0) + len(episode["action"]))
            bar.update(1)
    bar.close()
    data = {k: np.concatenate(v) for k, v in chunks.items()}
    report = {n: {**s, "success_rate": s["successes"] / s["attempts"]} for n, s in stats.items()}
    return Episodes(data, np.asarray(ends), source="metaworld expert", attrs={"tasks": list(tasks)}), report


def _expert_episode(env: MetaWorldEnv, seed: int, max_steps: int) -> dict[str, np.ndarray] | None:
    """One expert episode up to its first success, or None if it never succeeds."""
    obs, info = env.reset(seed=seed)
    rows: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    for _ in range(max_steps):
        action = env.expert_action(obs)
        rows.append(obs)
        actions.append(action)
        obs, _, terminated, truncated, step_info = env.step(action)
        if step_info["success"]:
            n = len(rows)
            return {
                "obs": np.stack(rows),
                "action": np.stack(actions),
                "task_index": np.full(n, info["task_index"], dtype=np.int64),
                "goal": np.repeat(np.asarray(info["goal"], dtype=np.float32)[None], n, axis=0),
            }
        if terminated or truncated:
            break
    return None


def _episode_metrics(infos: StepInfos) -> dict[str, Any]:
    steps = infos[1:] if len(infos) > 1 else infos
    return {
        "success": float(any(i.get("success", 0.0) for i in steps)),
        "task": str(infos[-1].get("task", "")),
    }


def _dataset_obs(episodes: Episodes, tasks: tuple[str, ...]) -> np.ndarray:
    """Recorded observations, after checking the data's task list matches the task ids the env uses."""
    where = episodes.source or "dataset"
    recorded = list(episodes.attrs.get("tasks", []))  # type: ignore[call-overload]
    if recorded != list(tasks):
        raise ScorePolicyError(
            f"{where}: attribute 'tasks' is {recorded or 'missing'}, expected {list(tasks)}; "
            "generate the data with `scorepolicy data generate metaworld` for these tasks"
        )
    if "obs" not in episodes.data:
        raise ScorePolicyError(f"{where}: key 'obs' missing; Meta-World data keeps observations in data/obs")
    return np.asarray(episodes.data["obs"], dtype=np.float32)


def metaworld_task(tasks: Sequence[str], name: str) -> Task:
    """A Task over Meta-World tasks (episode seed s → task s mod len(tasks))."""
    names = tuple(tasks)
    return Task(
        name=name,
        obs_dim=OBS_DIM,
        action_dim=ACTION_DIM,
        max_steps=500,
        default_seed=0,
        make_env=lambda render_mode: MetaWorldEnv(names, render_mode),
        dataset_obs=lambda e: _dataset_obs(e, names),
        dataset_actions=lambda e: np.asarray(e.data["action"], dtype=np.float32),
        episode_metrics=_episode_metrics,
        aggregate_metrics=lambda records: {},  # per-task success: evaluation.multitask
        n_subtasks=len(names),
        subtask_names=names,
        goal_spec=(len(names), 3),
    )
