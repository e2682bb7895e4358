"""evaluate(): the result JSON (aggregates, interval, errors, extras), its summary and the Evaluator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scorepolicy.core.task import Task
from scorepolicy.envs.obstacles import OBSTACLE_TASK
from scorepolicy.evaluation import EvalConfig, Evaluator, evaluate, format_result, wilson_interval


def test_result_json_written_and_loadable(
    tmp_path: Path, point_task: Callable[..., Task], chunk_policy: type[Any]
) -> None:
    path = tmp_path / "out" / "eval.json"
    cfg = EvalConfig(episodes=10, n_envs=4, json_path=path, progress=False)
    result = evaluate(chunk_policy(), point_task(), cfg, extra={"nfe": 10, "checkpoint": tmp_path / "run"})
    assert json.loads(path.read_text()) == result
    assert [p.name for p in path.parent.iterdir()] == ["eval.json"]  # no temp file left behind

    episodes = result["episodes"]
    assert result["task"] == "point"
    assert result["n_episodes"] == 10 == len(episodes)
    assert result["seeds"] == [1000, 1009]
    assert [r["seed"] for r in episodes] == list(range(1000, 1010))
    successes = sum(r["success"] for r in episodes)
    assert result["success_rate"] == pytest.approx(successes / 10)
    assert result["success_ci"] == pytest.approx(list(wilson_interval(int(successes), 10)))
    assert result["n_errors"] == 0
    assert result["mean_length"] == pytest.approx(np.mean([r["length"] for r in episodes]))
    assert result["mean_final_distance"] == pytest.approx(np.mean([r["final_distance"] for r in episodes]))
    assert result["nfe"] == 10 and result["checkpoint"] == str(tmp_path / "run")
    assert list(result)[-1] == "episodes"


def test_errors_count_as_failures(point_task: Callable[..., Task], chunk_policy: type[Any]) -> None:
    clean = evaluate(chunk_policy(), point_task(), EvalConfig(episodes=6, seed=2000, progress=False))
    crashed = evaluate(
        chunk_policy(), point_task(crash_seed=2001), EvalConfig(episodes=6, seed=2000, progress=False)
    )
    assert crashed["n_errors"] == 1
    assert crashed["episodes"][1]["error"] == "RuntimeError: simulated crash"
    expected = sum(r["success"] for i, r in enumerate(clean["episodes"]) if i != 1) / 6
    assert crashed["success_rate"] == pytest.approx(expected)
    ok = [r for i, r in enumerate(clean["episodes"]) if i != 1]
    assert crashed["mean_length"] == pytest.approx(np.mean([r["length"] for r in ok]))


def test_all_errors_gives_null_metrics(
    tmp_path: Path, point_task: Callable[..., Task], chunk_policy: type[Any]
) -> None:
    cfg = EvalConfig(episodes=2, json_path=tmp_path / "e.json", progress=False)
    result = evaluate(chunk_policy(), point_task(broken=True), cfg)
    assert result["n_errors"] == 2 and result["success_rate"] == 0.0 and result["mean_length"] is None
    assert json.loads((tmp_path / "e.json").read_text())["success_ci"][0] == 0.0
    assert "success" in format_result(result)


def test_extra_cannot_overwrite_metrics(point_task: Callable[..., Task], chunk_policy: type[Any]) -> None:
    with pytest.raises(ValueError, match="success_rate"):
        evaluate(
            chunk_policy(), point_task(), EvalConfig(episodes=1, progress=False), extra={"success_rate": 1.0}
        )


def test_format_result_and_evaluator(point_task: Callable[..., Task], chunk_policy: type[Any]) -> None:
    evaluator = Evaluator(point_task(), EvalConfig(episodes=5, n_envs=5, progress=False), extra={"nfe": 4})
    result = evaluator.run(chunk_policy())
    text = format_result(result)
    lo, hi = result["success_ci"]
    assert f"{result['success_rate']:.3f}" in text and f"[{lo:.3f}, {hi:.3f}]" in text
    assert "mean_final_distance" in text and "nfe" in text and "5 (seeds 1000..1004" in text
    assert "episodes" in text and "{" not in text


def test_obstacle_task_rolls_out(tmp_path: Path) -> None:
    task: Task = OBSTACLE_TASK  # the project's own module: imported, never skipped

    class Upward:
        def reset(self) -> None:
            pass

        def select_action(self, obs: np.ndarray) -> np.ndarray:
            return np.tile(np.array([0.0, 1.0], dtype=np.float32), (obs.shape[0], 1))

    cfg = EvalConfig(episodes=3, n_envs=2, max_steps=20, json_path=tmp_path / "o.json", progress=False)
    result = evaluate(Upward(), task, cfg)
    assert result["task"] == task.name and result["n_episodes"] == 3 and result["n_errors"] == 0
    # each record is what stepping the env by hand with the same seed and actions gives
    expected = []
    for seed in (0, 1, 2):
        env = task.make_env(None)
        env.reset(seed=seed)
        length, done, info = 0, False, {}
        while not done and length < 20:
            _, _, terminated, truncated, info = env.step(np.array([0.0, 1.0], dtype=np.float32))
            length, done = length + 1, terminated or truncated
        expected.append((seed, length, float(info["success"]), float(info["collision"])))
    got = [(r["seed"], r["length"], r["success"], r["collided"]) for r in result["episodes"]]
    assert got == expected
    assert any(length < 20 for _, length, _, _ in expected)  # an episode ended early (collision)
    assert json.loads((tmp_path / "o.json").read_text())["seeds"] == [
        task.default_seed,
        task.default_seed + 2,
    ]
