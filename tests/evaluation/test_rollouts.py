"""Seeded batched rollouts: determinism across batch sizes, stopping, errors, videos (deterministic controller;
per-episode noise of stochastic policies is tested in test_noise.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.waves import run_rollouts

SEEDS = list(range(1000, 1012))
SUCCESS_RADIUS = 0.05  # of the point task in point_task.py

Run = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="module")
def run(point_task: Callable[..., Task], chunk_policy: type[Any]) -> Run:
    """run(task=None, seeds=SEEDS, **run_rollouts options) with a fresh policy, no progress bar."""

    def _run(task: Task | None = None, seeds: list[int] = SEEDS, **kwargs: Any) -> list[dict[str, Any]]:
        kwargs.setdefault("progress", False)
        return run_rollouts(chunk_policy(), task or point_task(), seeds, **kwargs)

    return _run


@pytest.fixture(scope="module")
def reference(run: Run) -> list[dict[str, Any]]:
    return run(n_envs=1)


def test_records_are_in_seed_order_with_mixed_outcomes(reference: list[dict[str, Any]]) -> None:
    assert [r["seed"] for r in reference] == SEEDS
    successes = [r["success"] for r in reference]
    assert 0.0 < np.mean(successes) < 1.0, "the test task should give both successes and failures"
    for r in reference:
        assert set(r) == {"seed", "length", "return", "success", "final_distance", "mixed"}
        assert 1 <= r["length"] <= 15
        assert r["mixed"] == (1 if r["seed"] % 2 == 0 else 0.25)
        assert type(r["mixed"]) is (int if r["seed"] % 2 == 0 else float)


@pytest.mark.parametrize("n_envs", [3, 7, 50])
def test_identical_for_any_n_envs(run: Run, reference: list[dict[str, Any]], n_envs: int) -> None:
    assert run(n_envs=n_envs) == reference


def test_policy_reset_once_per_wave_with_constant_batch(
    point_task: Callable[..., Task], chunk_policy: type[Any]
) -> None:
    policy = chunk_policy()
    run_rollouts(policy, point_task(), SEEDS, n_envs=5, progress=False)
    assert policy.resets == 3
    assert policy.batch_sizes == [5, 5, 2]


def test_stops_at_first_success(reference: list[dict[str, Any]]) -> None:
    for r in reference:
        if r["success"]:
            assert r["final_distance"] < SUCCESS_RADIUS  # the success step is the last one
        else:
            assert r["length"] == 15


def test_runs_on_after_success_when_task_does_not_stop(run: Run, point_task: Callable[..., Task]) -> None:
    records = run(point_task(stop_on_success=False), n_envs=4)
    assert all(r["length"] == 15 for r in records)


def test_max_steps_cap(run: Run, reference: list[dict[str, Any]]) -> None:
    records = run(n_envs=5, max_steps=3)
    assert all(r["length"] <= 3 for r in records)
    assert all(r["length"] == 3 for r in records if not r["success"])
    assert [r["length"] for r in records] == [min(r["length"], 3) for r in reference]


def test_termination_and_truncation(run: Run, point_task: Callable[..., Task]) -> None:
    # Envs that terminate or truncate rest while the rest of the wave runs on.
    task = point_task(stop_on_success=False, terminate_on_success=True, time_limit=12)
    serial = run(task, n_envs=1)
    assert run(task, n_envs=12) == serial
    assert any(r["success"] for r in serial)
    assert all(r["length"] == 12 for r in serial if not r["success"])


def test_crashing_episode_is_recorded_and_others_count(
    run: Run, point_task: Callable[..., Task], reference: list[dict[str, Any]]
) -> None:
    crash = SEEDS[4]
    records = run(point_task(crash_seed=crash), n_envs=5)
    tb = records[4].pop("traceback")
    assert tb.startswith("point_task.py:") and tb.endswith(" in step"), tb
    assert records[4] == {"seed": crash, "error": "RuntimeError: simulated crash", "success": 0.0}
    assert records[:4] + records[5:] == reference[:4] + reference[5:]


def test_finished_envs_are_not_stepped(
    run: Run, point_task: Callable[..., Task], reference: list[dict[str, Any]]
) -> None:
    # An env that would raise if stepped after its episode ended is left alone: its record stays honest.
    early = next(r for r in reference if r["success"] and r["length"] < 10)
    task = point_task(crash_seed=early["seed"], crash_step=12)
    assert run(task, n_envs=len(SEEDS)) == reference


def test_env_creation_failure_recorded_per_episode(run: Run, point_task: Callable[..., Task]) -> None:
    records = run(point_task(broken=True), seeds=SEEDS[:3], n_envs=2)
    assert [r["seed"] for r in records] == SEEDS[:3]
    assert all(r["error"] == "OSError: simulator not installed" and r["success"] == 0.0 for r in records)


def test_keep_trajectories(run: Run, reference: list[dict[str, Any]]) -> None:
    records = run(seeds=SEEDS[:4], n_envs=4, keep_trajectories=True)
    for r, ref in zip(records, reference):
        assert len(r["observations"]) == r["length"] + 1
        assert all(len(o) == 2 for o in r["observations"])
        assert {k: v for k, v in r.items() if k != "observations"} == ref


def test_video_written_for_first_episodes(run: Run, tmp_path: Path, reference: list[dict[str, Any]]) -> None:
    records = run(seeds=SEEDS[:3], n_envs=3, video_dir=tmp_path / "videos", n_videos=1)
    video = tmp_path / "videos" / f"episode_{SEEDS[0]}.mp4"
    assert records[0]["video"] == str(video)
    assert video.is_file() and video.stat().st_size > 0
    assert "video" not in records[1] and "video" not in records[2]
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == [video.name]
    assert [{k: v for k, v in r.items() if k != "video"} for r in records] == reference[:3]


def test_invalid_options_raise(run: Run) -> None:
    with pytest.raises(ScorePolicyError, match="video_dir"):
        run(n_videos=1)
    with pytest.raises(ScorePolicyError, match="n_envs"):
        run(n_envs=0)
