"""Env worker processes: started by a fork server or spawned (never forked from a process using torch), the same records as in-process stepping, and a hung or
crashed env costs its own episode only (its worker is killed and replaced, the others go on)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.evaluation.conftest import stochastic_policy

from scorepolicy.core.task import Task
from scorepolicy.evaluation import EvalConfig, evaluate
from scorepolicy.evaluation.env_workers import EnvWorkerPool
from scorepolicy.evaluation.rollout import EpisodeRules, RolloutOptions
from scorepolicy.evaluation.waves import run_rollouts

SEEDS = list(range(1000, 1012))
BAD = 1004  # the seed whose env hangs or dies at its third step


@pytest.fixture(scope="module")
def reference(point_task: Callable[..., Task]) -> list[dict[str, Any]]:
    """Records of a stochastic policy with every env stepped in this process, one episode at a time."""
    return run_rollouts(stochastic_policy(), point_task(), SEEDS, n_envs=1, progress=False)


def test_workers_are_not_forked_from_this_process(point_task: Callable[..., Task]) -> None:
    task = point_task()
    with EnvWorkerPool(task, EpisodeRules.of(task, RolloutOptions()), 1, 10.0) as pool:
        stepper = pool.open([None])
        kind = type(pool.workers[0].proc).__name__  # type: ignore[union-attr]
        assert kind in ("ForkServerProcess", "SpawnProcess")
        stepper.close()


@pytest.mark.parametrize("fault", ["hang", "die"])
def test_a_hung_or_dead_env_is_that_episodes_error(
    point_task: Callable[..., Task], reference: list[dict[str, Any]], fault: str
) -> None:
    task = point_task(**{f"{fault}_seed": BAD})
    cfg = EvalConfig(
        episodes=len(SEEDS), seed=SEEDS[0], n_envs=6, env_workers=2, step_timeout=2.0, progress=False
    )
    result = evaluate(stochastic_policy(), task, cfg)
    records = result["episodes"]
    bad = SEEDS.index(BAD)
    expected = "EnvTimeout: env step took longer than 2 s" if fault == "hang" else "EnvWorkerDied: "
    assert records[bad]["error"].startswith(expected), records[bad]
    assert records[bad]["success"] == 0.0 and result["n_errors"] == 1
    # Every other episode, including those that shared the killed worker (replayed on its replacement),
    # has the record of in-process stepping; so does the next wave, on the same pool.
    assert records[:bad] + records[bad + 1 :] == reference[:bad] + reference[bad + 1 :]


UNGUARDED_SCRIPT = """
from scorepolicy.evaluation.waves import run_rollouts
from tests.evaluation.conftest import ChunkPolicy
from tests.evaluation.point_task import make_point_task

run_rollouts(ChunkPolicy(), make_point_task(), [1, 2], n_envs=2, env_workers=2, progress=False)
"""


def test_a_script_without_main_guard_gets_a_clear_error(tmp_path: Path) -> None:
    # Worker processes import the main script; unguarded, it would start workers again. That must end
    # the evaluation with a one-line error saying so, not record every episode as an env failure.
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert child.returncode != 0
    last = child.stderr.strip().splitlines()[-1]
    assert last.startswith("scorepolicy.errors.ScorePolicyError: env worker processes could not start"), last
    assert 'if __name__ == "__main__":' in last
