"""Shared helpers of the RL tests: a tiny 1-D reach task and a tiny score policy trained on biased demos.

`ReachEnv`: observation [x, target]; the action is the position to move to (clipped to ±1.5); success
when |x − target| < RADIUS. Demonstrations go to the target, but a fraction `wrong` of them overshoot
by `offset` for their whole episode, and every action carries an extra `bias`: a base cloned from them
is deliberately biased, and RL on top of it has room to raise its success. With MAX_STEPS = 2 and two
executed actions per chunk an episode is one chunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from scorepolicy.core.episodes import Episodes
from scorepolicy.core.task import StepInfos, Task
from scorepolicy.data.windows import WindowDataset, min_max_stats
from scorepolicy.models import MLPConfig
from scorepolicy.policies import PolicyConfig, ScorePolicy
from scorepolicy.rl.common import RLContext

RADIUS = 0.15
MAX_STEPS = 2


class ReachEnv(gym.Env[np.ndarray, np.ndarray]):
    """A point on a line that should reach a seeded target; reward −|x − target| per step."""

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = spaces.Box(-3.0, 3.0, (2,), np.float32)
        self.action_space = spaces.Box(-1.5, 1.5, (1,), np.float32)
        self.x, self.target = 0.0, 0.0

    def _obs(self) -> np.ndarray:
        return np.array([self.x, self.target], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.x, self.target = (float(v) for v in self.np_random.uniform(-1.0, 1.0, size=2))
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.x = float(np.clip(np.asarray(action).reshape(-1)[0], -1.5, 1.5))
        dist = abs(self.x - self.target)
        success = dist < RADIUS
        return self._obs(), -dist, success, False, {"is_success": success, "dist": dist}


def reach_metrics(infos: StepInfos) -> dict[str, float]:
    """Per-episode success and final distance."""
    ok = any(bool(i.get("is_success")) for i in infos)
    return {"success": float(ok), "score": 1.0 if ok else 0.0}


def reach_aggregate(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean score over episodes."""
    return {"mean_score": float(np.mean([r["score"] for r in records]))}


def make_reach_task() -> Task:
    """The 1-D reach task (seeded env factory, MAX_STEPS steps per episode)."""
    return Task(
        name="reach",
        obs_dim=2,
        action_dim=1,
        max_steps=MAX_STEPS,
        default_seed=0,
        make_env=ReachEnv,
        dataset_obs=lambda e: np.asarray(e.data["obs"], dtype=np.float32),
        dataset_actions=lambda e: np.asarray(e.data["action"], dtype=np.float32),
        episode_metrics=reach_metrics,
        aggregate_metrics=reach_aggregate,
    )


def biased_demos(
    n: int = 200,
    *,
    wrong: float = 0.5,
    offset: float = 0.6,
    bias: float = 0.0,
    noise: float = 0.02,
    seed: int = 0,
) -> Episodes:
    """Demonstrations of the reach task: to the target (+ `bias`), a fraction `wrong` of the
    episodes overshooting by `offset` (a wrong mode), Gaussian action noise."""
    rng = np.random.default_rng(seed)
    obs, act, ends = [], [], []
    for _ in range(n):
        x, target = rng.uniform(-1.0, 1.0, size=2)
        shift = offset if rng.random() < wrong else 0.0
        for _ in range(MAX_STEPS):
            a = target + shift + bias + rng.normal(0.0, noise)
            obs.append([x, target])
            act.append([a])
            x = float(np.clip(a, -1.5, 1.5))
        ends.append(len(obs))
    return Episodes(
        data={"obs": np.asarray(obs, np.float32), "action": np.asarray(act, np.float32)},
        episode_ends=np.asarray(ends, dtype=np.int64),
    )


def train_tiny_base(demos: Episodes, steps: int = 400, seed: int = 0) -> ScorePolicy:
    """A tiny score policy (horizon 4, 2 executed actions, DDIM NFE 3) trained on `demos` in seconds."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    cfg = PolicyConfig(
        obs_dim=2,
        action_dim=1,
        n_obs_steps=1,
        horizon=4,
        n_action_steps=2,
        mlp=MLPConfig(width=64, n_blocks=2, cond_dim=32, sigma_dim=16),
        seed=seed,
    )
    obs, act = np.asarray(demos.data["obs"]), np.asarray(demos.data["action"])
    data = WindowDataset(obs, act, np.asarray(demos.episode_ends), n_obs_steps=1, horizon=4)
    policy = ScorePolicy(cfg)
    policy.set_normalization({"obs": min_max_stats(obs), "action": min_max_stats(act)})
    opt = torch.optim.Adam(policy.parameters(), lr=2e-3)
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = {k: torch.from_numpy(v) for k, v in data.batch(rng.integers(0, len(data), 128)).items()}
        loss, _ = policy.compute_loss(batch, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return policy.eval()


def save_base_run(policy: ScorePolicy, run_dir: Path) -> Path:
    """Save a base as a run directory (weights, config, train_config.json naming the task)."""
    from scorepolicy.files import atomic_write_json

    policy.save_pretrained(run_dir)
    atomic_write_json(run_dir / "train_config.json", {"task": "reach"})
    return run_dir


@pytest.fixture(scope="session")
def reach_task() -> Task:
    return make_reach_task()


@pytest.fixture(scope="session")
def bimodal_base() -> ScorePolicy:
    """A base that picks the overshooting mode in about half of its chunks."""
    return train_tiny_base(biased_demos())


def rl_context(base: Any, task: Task, run_dir: Path, env_steps: int, **kw: Any) -> RLContext:
    """An RLContext for a test: 8 envs, training seeds from 1,000,000, reward 'success', no curve points
    unless `evaluate` is given, no progress bar; any field can be overridden."""
    settings: dict[str, Any] = {
        "n_envs": 8, "train_seed": 1_000_000, "reward": "success", "evaluate": lambda policy, step: {},
        "eval_every": 10**9, "checkpoint_every": 10**9, "progress": False, "seed": 0,
    }  # fmt: skip
    return RLContext(base, task, run_dir, env_steps, **{**settings, **kw})
