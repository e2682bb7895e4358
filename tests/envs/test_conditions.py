"""Perturbation conditions: each changes what it should and nothing else, deterministically per seed."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest

from scorepolicy.core.task import Condition
from scorepolicy.envs.conditions import (
    ConditionWrapper,
    apply_condition,
    check_condition_flags,
    resolve_condition,
)
from scorepolicy.envs.obstacle_conditions import OBSTACLE_CONDITIONS, demo_start_box
from scorepolicy.envs.obstacles import LAYOUT, OBSTACLE_TASK
from scorepolicy.envs.registry import get_task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig, evaluate

REPO_ROOT = Path(__file__).resolve().parents[2]


def _pusht() -> Any:
    return pytest.importorskip("scorepolicy.envs.pusht_conditions", exc_type=ImportError)


def _actions(seed: int, n: int, low: float, high: float) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, size=(n, 2))


def _roll(env: gym.Env[Any, Any], seed: int, actions: np.ndarray, state: Any) -> dict[str, list[Any]]:
    """Observations, simulator states, rewards and infos of a fixed action sequence (stops at the end)."""
    obs, _ = env.reset(seed=seed)
    out: dict[str, list[Any]] = {"obs": [obs], "state": [state(env)], "reward": [], "info": []}
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        for key, value in (("obs", obs), ("state", state(env)), ("reward", reward), ("info", info)):
            out[key].append(value)
        if terminated or truncated:
            break
    return out


def _pusht_state(env: gym.Env[Any, Any]) -> np.ndarray:
    return np.asarray(env.unwrapped.get_obs(), dtype=np.float64)  # type: ignore[attr-defined]


def _agent(env: gym.Env[Any, Any]) -> np.ndarray:
    return np.asarray(env.unwrapped.agent)  # type: ignore[attr-defined]


def _same_infos(a: list[dict[str, Any]], b: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert set(x) - set(skip) == set(y) - set(skip)
        for key in set(x) - set(skip):
            np.testing.assert_array_equal(np.asarray(x[key]), np.asarray(y[key]), err_msg=key)


# ------------------------------------------------------------------------------------------------------
# Names, defaults and errors


def test_nominal_is_the_task_itself_and_bit_identical() -> None:
    assert get_task("obstacles") is OBSTACLE_TASK
    assert get_task("obstacles", "nominal") is OBSTACLE_TASK
    assert get_task("obstacles", Condition()) is OBSTACLE_TASK
    actions = _actions(0, 60, -1, 1)
    a = _roll(get_task("obstacles", "nominal").make_env(None), 3, actions, _agent)
    b = _roll(OBSTACLE_TASK.make_env(None), 3, actions, _agent)
    np.testing.assert_array_equal(np.stack(a["obs"]), np.stack(b["obs"]))
    _same_infos(a["info"], b["info"])


def test_nominal_pusht_is_unchanged() -> None:
    pytest.importorskip("gym_pusht")
    from scorepolicy.envs.pusht import PUSHT_TASK

    assert get_task("pusht", "nominal") is PUSHT_TASK
    assert PUSHT_TASK.condition == Condition()


def test_defaults_are_filled_in_and_recorded() -> None:
    task = get_task("obstacles", "block-shift")
    assert task.condition == Condition("block-shift", 0.2, 30)
    assert task.condition.as_dict() == {"name": "block-shift", "scale": 0.2, "step": 30}
    assert get_task("obstacles", "obs-noise", 0.07).condition.as_dict() == {
        "name": "obs-noise",
        "scale": 0.07,
    }
    assert resolve_condition("obstacles", Condition("block-shift", None, 4)).step == 4
    assert Condition().as_dict() == {"name": "nominal"}
    assert task.name == "obstacles" and task.max_steps == OBSTACLE_TASK.max_steps


def test_bad_names_and_values_are_one_line_errors() -> None:
    with pytest.raises(
        ScorePolicyError, match="valid conditions: nominal, obs-noise, block-shift, unseen-start"
    ):
        get_task("obstacles", "wind")
    with pytest.raises(ScorePolicyError, match="runs only the nominal condition"):
        apply_condition(OBSTACLE_TASK.__class__(**{**OBSTACLE_TASK.__dict__, "name": "other"}), "obs-noise")
    with pytest.raises(ScorePolicyError, match="scale must be ≥ 0"):
        Condition("obs-noise", -1.0)
    with pytest.raises(ScorePolicyError, match="already runs under"):
        apply_condition(get_task("obstacles", "obs-noise"), "block-shift")
    with pytest.raises(ScorePolicyError, match="at most"):
        get_task("obstacles", "unseen-start", 0.6).make_env(None).reset(seed=0)
    with pytest.raises(ScorePolicyError, match=r"^--condition: unknown condition 'wind'"):
        check_condition_flags("wind", None, None)
    with pytest.raises(ScorePolicyError, match="need a --condition other than nominal"):
        check_condition_flags("nominal", 2.0, None)
    with pytest.raises(ScorePolicyError, match="block-shift only"):
        check_condition_flags("obs-noise", 2.0, 10)


def test_conditioned_task_pickles_for_env_workers() -> None:
    task = cloudpickle.loads(cloudpickle.dumps(get_task("obstacles", "obs-noise", 0.05)))
    env = task.make_env(None)
    assert isinstance(env, ConditionWrapper) and env.scale == 0.05


# ------------------------------------------------------------------------------------------------------
# Obstacle task


def test_obstacle_obs_noise_changes_only_the_observation() -> None:
    actions = np.tile([[0.1, 1.0]], (40, 1))
    noisy = _roll(get_task("obstacles", "obs-noise", 0.02).make_env(None), 5, actions, _agent)
    clean = _roll(OBSTACLE_TASK.make_env(None), 5, actions, _agent)
    np.testing.assert_array_equal(np.stack(noisy["state"]), np.stack(clean["state"]))
    assert noisy["reward"] == clean["reward"]
    _same_infos(noisy["info"], clean["info"])
    residual = np.stack(noisy["obs"]) - np.stack(clean["state"])
    assert np.all(residual != 0.0)
    assert 0.013 < residual.std() < 0.027  # 2 × 30 draws of N(0, 0.02²)
    again = _roll(get_task("obstacles", "obs-noise", 0.02).make_env(None), 5, actions, _agent)
    np.testing.assert_array_equal(np.stack(noisy["obs"]), np.stack(again["obs"]))
    other = _roll(get_task("obstacles", "obs-noise", 0.02).make_env(None), 6, actions, _agent)
    assert not np.allclose(np.stack(noisy["obs"])[1:5], np.stack(other["obs"])[1:5])


def test_obstacle_block_shift_moves_the_agent_sideways_at_the_step() -> None:
    actions = np.tile([[-1.0, 0.0]], (12, 1))  # sideways along the bottom: no obstacle in reach
    env = get_task("obstacles", Condition("block-shift", 0.2, 5)).make_env(None)
    shifted = _roll(env, 1, actions, _agent)
    clean = _roll(OBSTACLE_TASK.make_env(None), 1, actions, _agent)
    before, after = np.stack(clean["state"]), np.stack(shifted["state"])
    np.testing.assert_array_equal(after[:5], before[:5])  # reset and the first four steps are untouched
    x = before[5, 0]
    assert after[5, 0] == pytest.approx(x + (0.2 if x < 0.5 else -0.2))
    assert len(after) == len(before) == 13
    np.testing.assert_array_equal(after[5:, 1], before[5:, 1])  # heights unchanged
    np.testing.assert_allclose(after[5:, 0] - before[5:, 0], after[5, 0] - x, atol=1e-12)
    np.testing.assert_array_equal(shifted["obs"][5], after[5].astype(np.float32))
    flags = [bool(i.get("condition_shifted")) for i in shifted["info"]]
    assert flags == [i == 4 for i in range(len(flags))]  # info of step 5 only
    assert shifted["info"][4]["condition_shift_step"] == 5


def test_obstacle_shift_avoids_obstacles_and_walls() -> None:
    env = OBSTACLE_TASK.make_env(None)
    env.reset(options={"start": (0.3, 0.19)})  # level with row 1: +0.2 would land in its obstacle
    moved = OBSTACLE_CONDITIONS.shift(env, np.random.default_rng(0), 0.2)
    assert moved is not None and moved[0] == pytest.approx(0.1)
    env.reset(options={"start": (0.5, 0.88)})  # both ±0.23 land in row 3's outer obstacles
    assert OBSTACLE_CONDITIONS.shift(env, np.random.default_rng(0), 0.23) is None
    assert tuple(env.unwrapped.agent) == (0.5, 0.88)  # type: ignore[attr-defined]


def test_obstacle_unseen_starts_lie_outside_the_demonstrated_box() -> None:
    x0, x1, y0, y1 = demo_start_box()
    nominal = OBSTACLE_TASK.make_env(None)
    for seed in range(50):  # the region is where the task's own resets (and so the demos) start
        obs, _ = nominal.reset(seed=seed)
        assert x0 <= obs[0] <= x1 and y0 <= obs[1] <= y1
    env = get_task("obstacles", "unseen-start", 0.1).make_env(None)
    starts = np.stack([env.reset(seed=seed)[0] for seed in range(200)])
    assert np.all((starts[:, 0] <= x0 - 0.1) | (starts[:, 0] >= x1 + 0.1))
    assert np.all((starts[:, 1] >= y0) & (starts[:, 1] <= y1))
    assert starts[:, 0].min() < 0.1 and starts[:, 0].max() > 0.9  # both sides are used
    np.testing.assert_array_equal(starts[7], env.reset(seed=7)[0])
    explicit, _ = env.reset(seed=7, options={"start": (0.5, 0.04)})  # options placing the agent win
    np.testing.assert_array_equal(explicit, np.array([0.5, 0.04], dtype=np.float32))


def test_obstacle_conditions_reach_the_evaluation_result() -> None:
    """An evaluation under a condition records it, and strong observation noise or unseen starts
    lower the success of the scripted expert (a closed-loop policy that trusts what it sees)."""
    from scorepolicy.envs.obstacles import ObstacleExpert

    class Experts:
        def reset(self, seeds: list[int]) -> None:
            self.experts = [ObstacleExpert(seed=s, noise=0.0) for s in seeds]

        def select_action(self, obs: np.ndarray) -> np.ndarray:
            return np.stack([e(o) for e, o in zip(self.experts, obs)])

    cfg = EvalConfig(episodes=30, seed=0, n_envs=30)
    rates = {}
    for condition in ("nominal", "obs-noise", "unseen-start"):
        scale = {"obs-noise": 0.06, "unseen-start": 0.35}.get(condition)
        result = evaluate(Experts(), get_task("obstacles", condition, scale), cfg)
        assert result["condition"]["name"] == condition
        rates[condition] = result["success_rate"]
    assert rates["nominal"] >= 0.9
    assert rates["obs-noise"] <= rates["nominal"] - 0.3
    assert rates["unseen-start"] <= rates["nominal"] - 0.3
    assert result["condition"] == {"name": "unseen-start", "scale": 0.35}


# ------------------------------------------------------------------------------------------------------
# Push-T


def test_pusht_obs_noise_changes_only_the_observation() -> None:
    conditions = _pusht()
    from scorepolicy.envs.pusht import PUSHT_TASK, pusht_obs_from_state

    actions = _actions(1, 40, 100, 400)
    noisy = _roll(get_task("pusht", "obs-noise", 6.0).make_env(None), 100000, actions, _pusht_state)
    clean = _roll(PUSHT_TASK.make_env(None), 100000, actions, _pusht_state)
    np.testing.assert_array_equal(np.stack(noisy["state"]), np.stack(clean["state"]))
    assert noisy["reward"] == clean["reward"]
    _same_infos(noisy["info"], clean["info"])
    true = pusht_obs_from_state(np.stack(clean["state"]))
    seen = np.stack(noisy["obs"])
    assert 4.5 < float(np.std(seen[:, :4] - true[:, :4])) < 7.5
    np.testing.assert_allclose(seen[:, 4] ** 2 + seen[:, 5] ** 2, 1.0, atol=1e-6)
    dtheta = np.arctan2(seen[:, 4], seen[:, 5]) - np.arctan2(true[:, 4], true[:, 5])
    dtheta = (dtheta + np.pi) % (2 * np.pi) - np.pi
    assert 0.6 * 6.0 / conditions.ANGLE_ARM < float(np.std(dtheta)) < 1.4 * 6.0 / conditions.ANGLE_ARM
    again = _roll(get_task("pusht", "obs-noise", 6.0).make_env(None), 100000, actions, _pusht_state)
    np.testing.assert_array_equal(seen, np.stack(again["obs"]))


@pytest.mark.parametrize("fast", [True, False])
def test_pusht_block_shift_moves_the_block_at_the_step(fast: bool) -> None:
    conditions = _pusht()
    from scorepolicy.envs.pusht import make_pusht_env, pusht_obs_from_state

    condition = resolve_condition("pusht", Condition("block-shift", 50.0, 8))
    actions = _actions(2, 20, 150, 350)
    shifted = _roll(
        ConditionWrapper(make_pusht_env(fast=fast), conditions.PUSHT_CONDITIONS, condition),
        100001,
        actions,
        _pusht_state,
    )
    clean = _roll(make_pusht_env(fast=fast), 100001, actions, _pusht_state)
    before, after = np.stack(clean["state"]), np.stack(shifted["state"])
    np.testing.assert_array_equal(after[:8], before[:8])  # untouched until the step
    np.testing.assert_array_equal(after[8, :2], before[8, :2])  # the agent does not move
    moved = np.subtract(conditions.block_cog(after[8]), conditions.block_cog(before[8]))
    assert np.hypot(*moved) == pytest.approx(50.0, abs=1e-6)
    turn = (after[8, 4] - before[8, 4] + np.pi) % (2 * np.pi) - np.pi
    assert abs(turn) == pytest.approx(50.0 / conditions.ANGLE_ARM, abs=1e-9)
    assert conditions.block_fits(tuple(after[8, 2:4]), after[8, 4], tuple(after[8, :2]))
    np.testing.assert_allclose(shifted["obs"][8], pusht_obs_from_state(after[8]), atol=1e-4)
    flags = [bool(i.get("condition_shifted")) for i in shifted["info"]]
    assert flags == [i == 7 for i in range(len(flags))]
    again = _roll(
        ConditionWrapper(make_pusht_env(fast=fast), conditions.PUSHT_CONDITIONS, condition),
        100001,
        actions,
        _pusht_state,
    )
    np.testing.assert_array_equal(after, np.stack(again["state"]))


def test_pusht_shift_undoes_progress_and_respects_walls() -> None:
    conditions = _pusht()
    goal_cog = conditions.block_cog(np.array([0, 0, *conditions.GOAL_POSE]))
    rng = np.random.default_rng(0)
    state = np.array([100.0, 100.0, 300.0, 300.0, 1.5])
    (origin, angle) = conditions.shifted_block_pose(state, rng, 40.0)
    new = np.array([*state[:2], *origin, angle])
    dist = lambda s: math.dist(conditions.block_cog(s), goal_cog)  # noqa: E731
    assert dist(new) == pytest.approx(dist(state) + 40.0)
    assert abs(angle - math.pi / 4) > abs(1.5 - math.pi / 4)  # turned away from the goal angle
    corner = np.array([450.0, 250.0, 130.0, 80.0, 0.0])  # straight away from the goal is into the wall
    origin, angle = conditions.shifted_block_pose(corner, rng, 60.0)
    assert conditions.block_fits(origin, angle, (450.0, 250.0))
    assert math.dist(
        conditions.block_cog(np.array([0, 0, *origin, angle])), conditions.block_cog(corner)
    ) == (pytest.approx(60.0))


def test_pusht_unseen_starts_lie_outside_the_demonstrated_region() -> None:
    conditions = _pusht()
    from scorepolicy.envs.pusht import PUSHT_TASK, pusht_obs_from_state

    nominal = PUSHT_TASK.make_env(None)
    for seed in range(100000, 100030):  # the task's own resets put the block's centre inside the box
        nominal.reset(seed=seed)
        assert conditions.outside_demo_region(conditions.block_cog(_pusht_state(nominal))) <= 0.0
    env = get_task("pusht", "unseen-start", 25.0).make_env(None)
    for seed in range(30):
        obs, _ = env.reset(seed=seed)
        state = _pusht_state(env)
        assert conditions.outside_demo_region(conditions.block_cog(state)) >= 25.0 - 1e-6
        assert conditions.block_fits(tuple(state[2:4]), state[4], tuple(state[:2]))
        assert np.all((state[:2] >= 50) & (state[:2] <= 450))
        np.testing.assert_allclose(obs, pusht_obs_from_state(state), atol=1e-4)
    first = env.reset(seed=3)[0]
    np.testing.assert_array_equal(first, env.reset(seed=3)[0])
    with pytest.raises(ScorePolicyError, match="at most about 55"):
        get_task("pusht", "unseen-start", 200.0).make_env(None).reset(seed=0)


def _pusht_zarr() -> Path | None:
    candidates = [os.environ.get("SCOREPOLICY_PUSHT_ZARR", "")]
    candidates += [str(p / "shared" / "data" / "pusht_cchi_v7_replay.zarr") for p in REPO_ROOT.parents[:3]]
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)


def test_pusht_demos_start_inside_the_region() -> None:
    conditions = _pusht()
    path = _pusht_zarr()
    if path is None:
        pytest.skip("Push-T replay zarr not found (set SCOREPOLICY_PUSHT_ZARR)")
    from scorepolicy.data.zarr_replay import read_replay_zarr

    episodes = read_replay_zarr(path, keys=["state"])
    states = np.asarray(episodes.data["state"], dtype=np.float64)
    firsts = states[np.concatenate([[0], episodes.episode_ends[:-1]])]
    assert max(conditions.outside_demo_region(conditions.block_cog(s)) for s in firsts) <= 0.0
    assert max(conditions.outside_demo_region(conditions.block_cog(s)) for s in states) < 10.0
    assert LAYOUT.start == (0.5, 0.04)  # the obstacle box of demo_start_box is derived from this


def test_pusht_keypoints_runs_the_same_conditions() -> None:
    conditions = _pusht()
    from scorepolicy.envs.pusht_keypoints import PUSHT_KEYPOINTS_TASK, keypoint_obs_from_state

    actions = _actions(3, 12, 150, 350)
    clean = _roll(PUSHT_KEYPOINTS_TASK.make_env(None), 100002, actions, _pusht_state)
    noisy = _roll(get_task("pusht-keypoints", "obs-noise", 4.0).make_env(None), 100002, actions, _pusht_state)
    np.testing.assert_array_equal(np.stack(noisy["state"]), np.stack(clean["state"]))
    residual = np.stack(noisy["obs"]) - np.stack(clean["obs"])
    assert residual.shape == (13, 20) and 3.0 < float(residual.std()) < 5.0
    shifted = _roll(
        get_task("pusht-keypoints", Condition("block-shift", 40.0, 6)).make_env(None),
        100002,
        actions,
        _pusht_state,
    )
    state = shifted["state"][6]
    assert shifted["info"][5]["condition_shifted"]
    moved = np.subtract(conditions.block_cog(state), conditions.block_cog(clean["state"][6]))
    assert np.hypot(*moved) == pytest.approx(40.0, abs=1e-6)
    np.testing.assert_allclose(shifted["obs"][6], keypoint_obs_from_state(state), atol=1e-3)
    env = get_task("pusht-keypoints", "unseen-start", 20.0).make_env(None)
    obs, _ = env.reset(seed=5)
    assert obs.shape == (20,)
    assert conditions.outside_demo_region(conditions.block_cog(_pusht_state(env))) >= 20.0 - 1e-6
