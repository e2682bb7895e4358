"""Seeded, vectorised rollouts: determinism across batch sizes and vector types, stopping, errors, videos."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.rollout import unbatch_infos
from scorepolicy.evaluation.waves import run_rollouts

SEEDS = list(range(1000, 1012))
SUCCESS_RADIUS = 0.05  # of the point task in conftest.py

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


def test_identical_sync_and_async(
    run: Run, reference: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="scorepolicy.evaluation.rollout"):
        assert run(n_envs=6, vector="async") == reference
    assert not caplog.records  # no fallback to serial stepping


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


def test_termination_and_truncation_in_vector_env(
    run: Run, point_task: Callable[..., Task], caplog: pytest.LogCaptureFixture
) -> None:
    # Terminated envs must be idled (re-reset) by the vector env while the rest of the wave runs on,
    # without the vector env failing and the wave falling back to serial stepping.
    task = point_task(stop_on_success=False, terminate_on_success=True, time_limit=12)
    with caplog.at_level(logging.WARNING, logger="scorepolicy.evaluation.rollout"):
        serial = run(task, n_envs=1)
        assert run(task, n_envs=12) == serial
        assert run(task, n_envs=4, vector="async") == serial
    assert not caplog.records
    assert any(r["success"] for r in serial)
    assert all(r["length"] == 12 for r in serial if not r["success"])


@pytest.mark.filterwarnings("ignore::UserWarning:gymnasium.vector.async_vector_env")
def test_crashing_episode_is_recorded_and_others_count(
    run: Run, point_task: Callable[..., Task], reference: list[dict[str, Any]]
) -> None:
    crash = SEEDS[4]
    for vector in ("sync", "async"):
        records = run(point_task(crash_seed=crash), n_envs=5, vector=vector)
        tb = records[4].pop("traceback")
        assert tb.startswith("conftest.py:") and tb.endswith(" in step"), tb
        assert records[4] == {"seed": crash, "error": "RuntimeError: simulated crash", "success": 0.0}
        assert records[:4] + records[5:] == reference[:4] + reference[5:]


@pytest.mark.filterwarnings("ignore::UserWarning:gymnasium.vector.async_vector_env")
def test_crash_after_episode_end_is_not_an_error(
    run: Run,
    point_task: Callable[..., Task],
    reference: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A finished env is still stepped by the vector env; if it raises then, the wave is re-run serially
    # (where finished envs rest) and the episode keeps its honest record.
    early = next(r for r in reference if r["success"] and r["length"] < 10)
    task = point_task(crash_seed=early["seed"], crash_step=12)
    with caplog.at_level(logging.WARNING, logger="scorepolicy.evaluation.rollout"):
        assert run(task, n_envs=len(SEEDS)) == reference
    assert "re-running" in caplog.text


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


def test_unbatch_infos_respects_masks_and_nesting() -> None:
    infos = {
        "success": np.array([True, False, False]),
        "_success": np.array([True, True, False]),
        "nested": {"t": np.array([1, 0, 3]), "_t": np.array([True, False, True])},
        "_nested": np.array([True, False, True]),
        "_private": np.array([0.5, 0.0, 0.0]),
        "__private": np.array([True, False, False]),
    }
    rows = unbatch_infos(infos, 3)
    assert rows == [
        {"success": True, "nested": {"t": 1}, "_private": 0.5},
        {"success": False},
        {"nested": {"t": 3}},
    ]
    assert isinstance(rows[0]["success"], bool)
