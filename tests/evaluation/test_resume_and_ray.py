"""Per-wave noise seeding: an interrupted evaluation resumes to the uninterrupted result, and Ray workers
give the local backend's per-episode records."""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from scorepolicy.core.task import Task
from scorepolicy.envs.obstacles import OBSTACLE_TASK
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig, evaluate
from scorepolicy.evaluation.journal import journal_path_for
from scorepolicy.models import MLPConfig
from scorepolicy.policies import ChunkPolicy, PolicyConfig, build_policy


class NoisyPolicy:
    """The conftest chunk controller plus Gaussian noise from a generator that `reset(seed=)` reseeds,
    like ChunkPolicy's sampling noise. Raises KeyboardInterrupt at its `interrupt_at`-th call."""

    def __init__(self, base: Any, interrupt_at: int | None = None) -> None:
        self.base = base
        self.rng = np.random.default_rng(0)
        self.calls = 0
        self.interrupt_at = interrupt_at

    def reset(self, seed: int | None = None) -> None:
        self.base.reset()
        self.rng = np.random.default_rng(seed)

    def select_action(self, obs: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        action = self.base.select_action(obs)
        return action + 0.5 * self.rng.standard_normal(action.shape).astype(np.float32)


def test_resume_after_interruption_matches_uninterrupted(
    tmp_path: Path, point_task: Callable[..., Task], chunk_policy: type[Any]
) -> None:
    task = point_task(max_steps=15)
    cfg = EvalConfig(episodes=23, n_envs=5, progress=False, json_path=tmp_path / "full.json")
    full = evaluate(NoisyPolicy(chunk_policy()), task, cfg)
    assert 0 < full["success_rate"] < 1
    assert not journal_path_for(cfg.json_path).exists()  # removed once the result JSON is written

    path = tmp_path / "part.json"
    cfg_part = EvalConfig(episodes=23, n_envs=5, progress=False, json_path=path)
    with pytest.raises(KeyboardInterrupt):
        evaluate(NoisyPolicy(chunk_policy(), interrupt_at=40), task, cfg_part)  # in the 3rd or 4th wave
    journal = journal_path_for(path)
    lines = journal.read_text().splitlines()
    assert 2 <= len(lines) - 1 < 5 and not path.exists()
    with journal.open("a") as f:
        f.write('{"wave": 9, "recor')  # a line cut short by the interruption is ignored
    resumed_policy = NoisyPolicy(chunk_policy())
    resumed = evaluate(resumed_policy, task, EvalConfig(**{**cfg_part.__dict__, "resume": True}))
    assert resumed == full
    assert resumed_policy.calls < NoisyPolicy(chunk_policy()).calls + 15 * 5 * 3  # finished waves not re-run
    assert json.loads(path.read_text()) == full


def test_resume_refuses_a_journal_of_other_settings(
    tmp_path: Path, point_task: Callable[..., Task], chunk_policy: type[Any]
) -> None:
    path = tmp_path / "eval.json"
    with pytest.raises(KeyboardInterrupt):
        evaluate(
            NoisyPolicy(chunk_policy(), 20), point_task(), EvalConfig(episodes=10, n_envs=2, json_path=path)
        )
    other = EvalConfig(episodes=10, n_envs=5, json_path=path, resume=True, progress=False)
    with pytest.raises(ScorePolicyError, match="n_envs=2"):
        evaluate(NoisyPolicy(chunk_policy()), point_task(), other)
    with pytest.raises(ScorePolicyError, match="--json"):
        evaluate(NoisyPolicy(chunk_policy()), point_task(), EvalConfig(episodes=2, resume=True))


def test_errors_are_summarised_with_seed_and_traceback(
    point_task: Callable[..., Task], chunk_policy: type[Any]
) -> None:
    result = evaluate(
        chunk_policy(),
        point_task(crash_seed=1003, crash_step=1),
        EvalConfig(episodes=6, n_envs=3, progress=False),
    )
    assert result["n_errors"] == 1 and result["n_episodes"] == 6
    (error,) = result["errors"]
    assert error["seed"] == 1003 and error["error"] == "RuntimeError: simulated crash"
    assert "conftest.py" in error["traceback"]


def _saved_obstacle_policy(directory: Path) -> Path:
    """An untrained (so: noise-driven) tiny score policy for the obstacle task, saved to disk."""
    cfg = PolicyConfig(
        obs_dim=2, action_dim=2, mlp=MLPConfig(width=32, n_blocks=1, cond_dim=16, sigma_dim=16)
    )
    torch.manual_seed(0)
    policy = build_policy(cfg)
    stats = {
        "obs": {"min": np.zeros(2), "max": np.ones(2)},
        "action": {"min": -np.ones(2), "max": np.ones(2)},
    }
    policy.set_normalization(stats)
    policy.save_pretrained(directory)
    return directory


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="ray is not installed (optional extra: pip install 'scorepolicy[ray]')",
)
def test_ray_backend_gives_local_records(tmp_path: Path) -> None:
    factory = functools.partial(ChunkPolicy.from_pretrained, _saved_obstacle_policy(tmp_path / "run"))
    cfg = EvalConfig(episodes=40, n_envs=8, progress=False)
    local = evaluate(None, OBSTACLE_TASK, cfg, policy_factory=factory)
    outcomes = {(r["success"], r.get("collided"), r["length"]) for r in local["episodes"]}
    assert len(outcomes) > 5  # the noise really drives the episodes apart
    ray_cfg = EvalConfig(episodes=40, n_envs=8, progress=False, backend="ray", workers=2)
    assert evaluate(None, OBSTACLE_TASK, ray_cfg, policy_factory=factory) == local


def test_ray_backend_needs_a_factory(point_task: Callable[..., Task]) -> None:
    with pytest.raises(ScorePolicyError, match="policy_factory"):
        evaluate(None, point_task(), EvalConfig(episodes=2, backend="ray", progress=False))


def test_env_worker_processes_give_the_same_records(
    point_task: Callable[..., Task], chunk_policy: type[Any]
) -> None:
    from scorepolicy.evaluation.waves import run_rollouts

    seeds = list(range(1000, 1012))
    for task in (point_task(), point_task(crash_seed=1004)):
        here = run_rollouts(NoisyPolicy(chunk_policy()), task, seeds, n_envs=5, progress=False)
        shards = run_rollouts(
            NoisyPolicy(chunk_policy()), task, seeds, n_envs=5, env_workers=2, progress=False
        )
        assert shards == here
    assert any("error" in r for r in shards) and any(r["success"] for r in shards)
