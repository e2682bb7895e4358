"""Fixtures of the evaluation tests: the point task, a deterministic batch policy, a stochastic score policy.

Env worker processes are spawned: they unpickle the point task by importing `tests.evaluation.point_task`,
so the repository root goes on `sys.path` here (spawn passes `sys.path` on to them).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.evaluation.point_task import SPEED, make_point_task

from scorepolicy.core.task import Task
from scorepolicy.models import MLPConfig
from scorepolicy.policies import ChunkPolicy as ScoreChunkPolicy
from scorepolicy.policies import PolicyConfig, build_policy
from scorepolicy.policies.config import DDPMConfig, DiffusionConfig

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.append(ROOT)


class ChunkPolicy:
    """A proportional controller that plans 2-step action chunks per batch row, like a chunked policy.

    Asserts that the batch size stays fixed between resets (as a real history-keeping policy needs).
    """

    def __init__(self, chunk: int = 2) -> None:
        self.chunk = chunk
        self.queue: list[np.ndarray] = []
        self.batch: int | None = None
        self.resets = 0
        self.batch_sizes: list[int] = []

    def reset(self) -> None:
        self.queue = []
        self.batch = None
        self.resets += 1

    def select_action(self, obs: np.ndarray) -> np.ndarray:
        assert obs.dtype == np.float32 and obs.ndim == 2 and obs.shape[1] == 2
        if self.batch is None:
            self.batch = obs.shape[0]
            self.batch_sizes.append(self.batch)
        assert obs.shape[0] == self.batch, "batch size changed within a wave"
        if not self.queue:
            a = np.clip((obs[:, 1:2] - obs[:, 0:1]) / SPEED, -1.0, 1.0)
            self.queue = [a.copy() for _ in range(self.chunk)]
        return self.queue.pop(0)


def stochastic_policy(kind: str = "score", obs_dim: int = 2, action_dim: int = 1) -> ScoreChunkPolicy:
    """An untrained tiny policy (seeded weights) whose chunks are driven by its sampling noise: Euler-
    ancestral sampling for kind 'score', ancestral DDPM for 'ddpm'."""
    cfg = PolicyConfig(
        obs_dim=obs_dim,
        action_dim=action_dim,
        horizon=4,
        n_action_steps=2,
        mlp=MLPConfig(width=32, n_blocks=1, cond_dim=16, sigma_dim=16),
        diffusion=DiffusionConfig(sampler="euler_ancestral", nfe=3),
        ddpm=DDPMConfig(inference_steps=5),
    )
    cfg = dataclasses.replace(cfg, kind=kind)  # type: ignore[arg-type]
    torch.manual_seed(0)
    policy = build_policy(cfg)
    policy.set_normalization(
        {
            "obs": {"min": -np.ones(obs_dim), "max": np.ones(obs_dim)},
            "action": {"min": -np.ones(action_dim), "max": np.ones(action_dim)},
        }
    )
    return policy.eval()


@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """One torch thread, as evaluations run (and as a busy 2-core machine needs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def point_task() -> Callable[..., Task]:
    """Factory for the point task: point_task(max_steps=, stop_on_success=, crash_seed=, ...)."""
    return make_point_task


@pytest.fixture(scope="session")
def chunk_policy() -> type[ChunkPolicy]:
    """The chunked proportional-controller policy class."""
    return ChunkPolicy
