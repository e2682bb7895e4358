"""`improve --subtask`: best-of-K on one task of a multi-task suite trains and evaluates only on its seeds,
records the subtask, and `eval` of the improved run defaults to it; bad names and resumes are refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch
from tests.rl.conftest import ReachEnv, save_base_run

from scorepolicy import api
from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig
from scorepolicy.policies import ScorePolicy
from scorepolicy.rl.best_of_k_config import BestOfKConfig

SMALL = BestOfKConfig(
    episodes_per_iteration=40, n_action_steps=None, ensemble=2, hidden=32, layers=2, epochs=5, batch_size=64
)
RESETS: list[int] = []


class LoggedReach(ReachEnv):
    """The reach env, logging every reset seed it is given."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        RESETS.append(int(seed) if seed is not None else -1)
        return super().reset(seed=seed, options=options)


@pytest.fixture
def suite(monkeypatch: pytest.MonkeyPatch, reach_task: Task) -> Task:
    """A two-task 'suite' of the reach env (seed s → task s mod 2), answered by get_task('reach')."""
    import scorepolicy.api.evaluation as eval_module
    import scorepolicy.api.improvement as improve_module

    def make(render_mode: str | None = None) -> gym.Env[Any, Any]:
        return LoggedReach(render_mode)

    task = dataclasses.replace(reach_task, make_env=make, n_subtasks=2, subtask_names=("near", "far"))
    monkeypatch.setattr(improve_module, "get_task", lambda name: task)
    monkeypatch.setattr(eval_module, "get_task", lambda name, condition=None: task)
    return task


def _job(run: Path, out: Path, **kw: Any) -> api.ImproveJob:
    args: dict[str, Any] = {
        "run": run,
        "out": out,
        "method": "best-of-k",
        "env_steps": 100,
        "eval_episodes": 10,
        "n_envs": 8,
        "progress": False,
        "best_of_k": SMALL,
        "subtask": "far",
    }
    return api.ImproveJob(**{**args, **kw})


def test_improve_on_a_subtask_uses_only_its_seeds_and_eval_defaults_to_it(
    tmp_path: Path, bimodal_base: ScorePolicy, suite: Task
) -> None:
    torch.set_num_threads(1)
    run = save_base_run(bimodal_base, tmp_path / "base")
    RESETS.clear()
    api.improve(_job(run, tmp_path / "bok"))
    assert RESETS and all(s % 2 == 1 for s in RESETS), "a seed of the other subtask was used"
    assert {2 * s + 1 for s in range(10)} <= set(RESETS)  # the curve's validation seeds 0..9
    assert min(s for s in RESETS if s > 100) == 2 * 1_000_000 + 1  # training seeds from --train-seed
    meta = json.loads((tmp_path / "bok" / "config.json").read_text())
    assert meta["subtask"] == "far" and meta["reward"] == "success" and meta["kind"] == "best-of-k"
    RESETS.clear()
    cfg = EvalConfig(episodes=6, seed=500, n_envs=6, progress=False)
    result = api.evaluate_run(tmp_path / "bok", cfg)
    assert result["subtask"] == "far" and result["task"] == "reach:far" and result["n_episodes"] == 6
    assert sorted(RESETS) == [2 * s + 1 for s in range(500, 506)]


def test_bad_subtask_and_a_resume_with_another_subtask_are_one_line_errors(
    tmp_path: Path, bimodal_base: ScorePolicy, suite: Task
) -> None:
    run = save_base_run(bimodal_base, tmp_path / "base")
    with pytest.raises(ScorePolicyError, match="--subtask middle: not a subtask of reach; valid: near, far"):
        api.improve(_job(run, tmp_path / "bad", subtask="middle"))
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "bok"
    out.mkdir()
    (out / "improve_config.json").write_text(json.dumps({"subtask": "far"}))
    with pytest.raises(ScorePolicyError, match="trained with --subtask far"):
        api.improve(_job(run, out, subtask="near", resume=True))
    with pytest.raises(ScorePolicyError, match="--guidance needs a goal-conditioned policy"):
        api.improve(_job(run, tmp_path / "guided", guidance=1.5))
