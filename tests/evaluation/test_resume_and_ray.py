"""Per-episode noise seeding: an interrupted evaluation (by an exception, or a killed process) resumes to
the uninterrupted result, and Ray workers give the local backend's per-episode records."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.evaluation.conftest import stochastic_policy
from tests.evaluation.point_task import make_point_task

from scorepolicy.core.task import Task
from scorepolicy.envs.obstacles import OBSTACLE_TASK
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig, evaluate
from scorepolicy.evaluation.journal import journal_path_for
from scorepolicy.policies import ChunkPolicy


class NoisyPolicy:
    """The conftest chunk controller plus Gaussian noise from one generator per batch row, seeded by
    `reset(seeds=)` like ChunkPolicy's sampling noise. Raises KeyboardInterrupt at its `interrupt_at`-th call."""

    def __init__(self, base: Any, interrupt_at: int | None = None) -> None:
        self.base = base
        self.rngs: list[np.random.Generator] = []
        self.calls = 0
        self.interrupt_at = interrupt_at

    def reset(self, seeds: list[int] | None = None) -> None:
        self.base.reset()
        self.rngs = [np.random.default_rng(s) for s in seeds or []]

    def select_action(self, obs: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        action = self.base.select_action(obs)
        noise = np.stack([rng.standard_normal(action.shape[1:]) for rng in self.rngs]).astype(np.float32)
        return action + 0.5 * noise


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
    assert "point_task.py" in error["traceback"]


KILLED_CHILD = """
import os, signal, sys
from pathlib import Path
from scorepolicy.evaluation import EvalConfig, evaluate
from tests.evaluation.conftest import stochastic_policy
from tests.evaluation.point_task import make_point_task

class Killed:
    # The stochastic policy, but the process is SIGKILLed at its 40th action: no handler, no cleanup.
    def __init__(self):
        self.policy, self.calls = stochastic_policy(), 0
    def reset(self, seeds=None):
        self.policy.reset(seeds=seeds)
    def select_action(self, obs):
        self.calls += 1
        if self.calls == 40:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.policy.select_action(obs)

cfg = EvalConfig(episodes=20, n_envs=4, progress=False, json_path=Path(sys.argv[1]))
evaluate(Killed(), make_point_task(max_steps=15, stop_on_success=False), cfg)
"""


def test_killed_evaluation_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    task = make_point_task(max_steps=15, stop_on_success=False)  # 15 steps a wave: the kill is in wave 3
    full = evaluate(stochastic_policy(), task, EvalConfig(episodes=20, n_envs=4, progress=False))
    path = tmp_path / "eval.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*sys.path])}
    child = subprocess.run([sys.executable, "-c", KILLED_CHILD, str(path)], env=env, capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    journal = journal_path_for(path)
    assert not path.exists() and len(journal.read_text().splitlines()) == 1 + 2  # header + 2 waves
    resumed = evaluate(
        stochastic_policy(),
        task,
        EvalConfig(episodes=20, n_envs=4, progress=False, json_path=path, resume=True),
    )
    assert resumed["episodes"] == full["episodes"] and resumed == full
    assert not journal.exists()


def _saved_stochastic_policy(directory: Path) -> Path:
    """An untrained (so: noise-driven) tiny score policy for the obstacle task, sampling with
    Euler-ancestral (fresh noise at every step), saved to disk."""
    policy = stochastic_policy(obs_dim=2, action_dim=2)
    policy.save_pretrained(directory)
    return directory


def test_ray_backend_gives_local_records(tmp_path: Path) -> None:
    factory = functools.partial(ChunkPolicy.from_pretrained, _saved_stochastic_policy(tmp_path / "run"))
    cfg = EvalConfig(episodes=24, n_envs=8, progress=False)
    local = evaluate(None, OBSTACLE_TASK, cfg, policy_factory=factory)
    outcomes = {(r["success"], r.get("collided"), r["length"]) for r in local["episodes"]}
    assert len(outcomes) > 5  # the noise really drives the episodes apart
    ray_cfg = EvalConfig(episodes=24, n_envs=5, progress=False, backend="ray", workers=2)
    assert evaluate(None, OBSTACLE_TASK, ray_cfg, policy_factory=factory) == local  # other n_envs too


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
