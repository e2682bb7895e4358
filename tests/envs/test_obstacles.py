"""The bundled obstacle-avoidance task: env dynamics, route labels, expert, demos, metrics and pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scorepolicy.envs.obstacles import (
    LAYOUT,
    OBSTACLE_TASK,
    ObstacleEnv,
    ObstacleExpert,
    generate_obstacle_demos,
    obstacle_episode_metrics,
    obstacle_expert,
    route_entropy,
    run_obstacle_episode,
)
from scorepolicy.envs.obstacles_plot import plot_obstacle_rollouts
from scorepolicy.errors import ScorePolicyError


def _drive_to(env: ObstacleEnv, pos: np.ndarray, target: tuple[float, float]) -> tuple[np.ndarray, dict]:
    """Bang-bang moves (direction kept) towards target; returns the final observation and info."""
    info: dict = {}
    for _ in range(200):
        delta = (np.asarray(target) - pos) / LAYOUT.max_step
        if np.abs(delta).max() < 1e-6:
            break
        action = delta / max(1.0, float(np.abs(delta).max()))
        pos, _, terminated, _, info = env.step(action.astype(np.float32))
        pos = pos.astype(np.float64)
        assert not terminated or info["success"], info
    return pos, info


def test_geometry_has_24_routes_and_route_codec_roundtrips() -> None:
    assert LAYOUT.n_gaps == (2, 3, 4)
    assert LAYOUT.n_routes == 24
    for route in range(24):
        assert LAYOUT.route_of(LAYOUT.gaps_of(route)) == route
    assert LAYOUT.route_of([1, 2, 3]) == 1 * 12 + 2 * 4 + 3
    with pytest.raises(ScorePolicyError):
        LAYOUT.gaps_of(24)


def _corridor(k: int) -> float:
    """A height between row k-1 (or the start, for k = 0) and row k, clear of both."""
    below = LAYOUT.start[1] if k == 0 else LAYOUT.row_y[k - 1] + LAYOUT.row_radius[k - 1]
    return 0.5 * (below + LAYOUT.row_y[k] - LAYOUT.row_radius[k])


def test_hand_driven_route_is_labelled() -> None:
    env = ObstacleEnv()
    obs, info = env.reset(seed=0, options={"start": LAYOUT.start})
    assert info["route"] == -1 and info["gaps"] == ()
    pos = obs.astype(np.float64)
    # Right of the big obstacle (gap 1), middle of row 2 (gap 1), far left of row 3 (gap 0), boxy.
    x1, x2, x3 = LAYOUT.gap_centre(0, 1), LAYOUT.gap_centre(1, 1), LAYOUT.gap_centre(2, 0)
    for target in [(x1, _corridor(0)), (x1, _corridor(1)), (x2, _corridor(1)), (x2, _corridor(2))]:
        pos, info = _drive_to(env, pos, target)
    assert info["gaps"] == (1, 1) and info["route"] == -1
    pos, info = _drive_to(env, pos, (x3, _corridor(2)))
    pos, info = _drive_to(env, pos, (x3, LAYOUT.goal_y + 0.02))
    assert info["success"] and not info["collision"]
    assert info["gaps"] == (1, 1, 0)
    assert info["route"] == 1 * 12 + 1 * 4 + 0


def test_crossing_a_row_downwards_forgets_it() -> None:
    env = ObstacleEnv()
    x = LAYOUT.gap_centre(0, 0)
    below, above = _corridor(0), _corridor(1)
    obs, _ = env.reset(options={"start": (x, below)})
    pos, info = _drive_to(env, obs.astype(np.float64), (x, above))
    assert info["gaps"] == (0,)
    pos, info = _drive_to(env, pos, (x, below))
    assert info["gaps"] == ()


def _clearance(path: np.ndarray) -> float:
    """Least distance from the polyline `path` (n, 2) to the edge of any obstacle."""
    a, b = path[:-1, None, :], path[1:, None, :]
    obstacles = np.array(LAYOUT.obstacles)
    centres = obstacles[None, :, :2]
    d = b - a
    t = np.clip(((centres - a) * d).sum(-1) / np.maximum((d * d).sum(-1), 1e-12), 0.0, 1.0)
    nearest = a + t[..., None] * d
    return float((np.linalg.norm(nearest - centres, axis=-1) - obstacles[None, :, 2]).min())


_START_CORNERS = [
    (LAYOUT.start[0] + sx * LAYOUT.start_jitter[0], LAYOUT.start[1] + sy * LAYOUT.start_jitter[1])
    for sx in (-1, 0, 1)
    for sy in (-1, 1)
]


def test_straight_diagonals_between_gap_centres_clear_every_obstacle() -> None:
    # The geometry leaves room for a straight line from any start through any sequence of gap centres.
    for route in range(LAYOUT.n_routes):
        for start in _START_CORNERS:
            assert _clearance(np.array([start, *LAYOUT.route_waypoints(route)])) >= 0.03, (route, start)


def test_noise_free_expert_flies_every_route_smoothly_with_clearance() -> None:
    env = ObstacleEnv()
    lengths = []
    for route in range(24):
        for start in _START_CORNERS:
            expert = ObstacleExpert(noise=0.0, route=route)
            obs, _ = env.reset(options={"start": start})
            expert.reset()
            positions, actions, info = [obs], [], {}
            for _ in range(LAYOUT.max_episode_steps):
                actions.append(expert(obs))
                obs, _, terminated, truncated, info = env.step(actions[-1])
                positions.append(obs)
                if terminated or truncated:
                    break
            assert info["success"] and info["route"] == route, (route, start, info)
            path = np.array(positions, dtype=np.float64)
            assert _clearance(path) >= 0.03, (route, start)
            act = np.array(actions, dtype=np.float64)
            np.testing.assert_allclose(np.linalg.norm(act, axis=1), 1.0, atol=1e-5)  # full speed
            heading = np.arctan2(act[:, 1], act[:, 0])
            turn = np.abs((np.diff(heading) + np.pi) % (2 * np.pi) - np.pi)
            assert np.degrees(turn).max() < 45.0, (route, start)  # no sharp corners
            assert (act[:, 1] > 0.0).all()  # always climbing
            lengths.append(len(actions))
    assert max(lengths) < LAYOUT.max_episode_steps // 2  # no dawdling: at most ~half the step limit


def test_expert_path_passes_through_the_gap_centres() -> None:
    expert = ObstacleExpert(noise=0.0, route=LAYOUT.route_of([0, 2, 1]))
    expert.reset()
    path = np.array(expert.smooth_path(LAYOUT.start))
    for x, y in LAYOUT.route_waypoints(expert.route)[:-1]:
        assert np.hypot(path[:, 0] - x, path[:, 1] - y).min() < 1e-9
    assert _clearance(path) >= 0.03


def test_collision_terminates_as_failure() -> None:
    env = ObstacleEnv()
    env.reset(seed=0)
    up = np.array([0.0, 1.0], dtype=np.float32)
    for _ in range(20):
        _, reward, terminated, truncated, info = env.step(up)
        if terminated:
            break
    assert terminated and not truncated
    assert info["collision"] and not info["success"] and reward == 0.0


def test_leaving_the_field_terminates() -> None:
    env = ObstacleEnv()
    env.reset(seed=0)
    for _ in range(40):
        _, _, terminated, _, info = env.step(np.array([-1.0, 0.0], dtype=np.float32))
        if terminated:
            break
    assert terminated and info["out_of_bounds"] and not info["success"] and not info["collision"]


def test_truncates_at_step_limit_and_rejects_nan() -> None:
    env = ObstacleEnv(max_episode_steps=5)
    env.reset(seed=0)
    results = [env.step(np.zeros(2, dtype=np.float32)) for _ in range(5)]
    assert [r[3] for r in results] == [False] * 4 + [True]
    with pytest.raises(ScorePolicyError):
        env.step(np.array([np.nan, 0.0], dtype=np.float32))


def test_reset_is_seeded() -> None:
    env = ObstacleEnv()
    a, _ = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    c, _ = env.reset(seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert env.observation_space.contains(a)


def test_expert_succeeds_on_many_diverse_routes() -> None:
    env = OBSTACLE_TASK.make_env(None)
    expert = obstacle_expert(seed=0)
    records = []
    for episode in range(200):
        obs, _ = env.reset(seed=OBSTACLE_TASK.default_seed + episode)
        expert.reset()
        infos = []
        for _ in range(OBSTACLE_TASK.max_steps):
            obs, _, terminated, truncated, info = env.step(expert(obs))
            infos.append(info)
            if terminated or truncated:
                break
        records.append(OBSTACLE_TASK.episode_metrics(infos))
    assert np.mean([r["success"] for r in records]) >= 0.97
    agg = OBSTACLE_TASK.aggregate_metrics(records)
    assert agg["n_routes"] >= 20
    assert agg["route_entropy"] >= 0.9


def test_random_policy_mostly_fails() -> None:
    env = ObstacleEnv()
    rng = np.random.default_rng(0)
    successes = 0
    for episode in range(50):
        env.reset(seed=episode)
        for _ in range(OBSTACLE_TASK.max_steps):
            action = rng.uniform(-1.0, 1.0, size=2).astype(np.float32)
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        successes += int(info["success"])
    assert successes / 50 <= 0.1


def test_demos_are_deterministic_and_well_formed() -> None:
    demos = generate_obstacle_demos(20, seed=3)
    again = generate_obstacle_demos(20, seed=3)
    other = generate_obstacle_demos(20, seed=4)
    assert demos.n_episodes == 20
    for key in ("obs", "action", "route"):
        np.testing.assert_array_equal(demos.data[key], again.data[key])
    np.testing.assert_array_equal(demos.episode_ends, again.episode_ends)
    assert not np.array_equal(demos.data["obs"][:50], other.data["obs"][:50])
    assert demos.data["obs"].dtype == np.float32 and demos.data["obs"].shape == (demos.n_steps, 2)
    assert demos.data["action"].dtype == np.float32 and demos.data["action"].shape == (demos.n_steps, 2)
    assert demos.data["route"].dtype == np.int64
    assert np.abs(demos.data["action"]).max() <= 1.0
    np.testing.assert_array_equal(OBSTACLE_TASK.dataset_obs(demos), demos.data["obs"])
    np.testing.assert_array_equal(OBSTACLE_TASK.dataset_actions(demos), demos.data["action"])
    for i in range(demos.n_episodes):
        part = demos.episode_slice(i)
        obs, routes = demos.data["obs"][part], demos.data["route"][part]
        assert len(set(routes.tolist())) == 1 and 0 <= routes[0] < 24
        assert obs[0, 1] < 0.1  # each episode starts at the bottom
        final = obs[-1] + demos.data["action"][part][-1] * LAYOUT.max_step
        assert final[1] >= LAYOUT.goal_y - 1e-5  # and its last action reaches the goal line
        assert np.abs(np.diff(obs, axis=0)).max() <= LAYOUT.max_step + 1e-5


def test_episode_metrics_and_entropy() -> None:
    infos = [
        {"success": False, "collision": False, "route": -1},
        {"success": True, "collision": False, "route": 5},
    ]
    assert obstacle_episode_metrics(infos) == {"success": 1.0, "route": 5.0, "collided": 0.0}
    assert obstacle_episode_metrics([])["route"] == -1.0
    uniform = [{"success": 1.0, "route": float(r)} for r in range(24)]
    agg = OBSTACLE_TASK.aggregate_metrics(uniform)
    assert agg["n_routes"] == 24 and agg["route_entropy"] == pytest.approx(1.0)
    single = [{"success": 1.0, "route": 3.0}] * 10 + [{"success": 0.0, "route": 7.0}] * 5
    assert OBSTACLE_TASK.aggregate_metrics(single) == {"n_routes": 1.0, "route_entropy": 0.0}
    assert OBSTACLE_TASK.aggregate_metrics([]) == {"n_routes": 0.0, "route_entropy": 0.0}
    assert route_entropy([0, 1]) == pytest.approx(np.log(2) / np.log(24))


def test_render_and_plot(tmp_path: Path) -> None:
    env = OBSTACLE_TASK.make_env("rgb_array")
    obs, _ = env.reset(seed=0)
    expert = ObstacleExpert(seed=0)
    for _ in range(10):
        obs, *_ = env.step(expert(obs))
    frame = env.render()
    assert isinstance(frame, np.ndarray)
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) >= 4  # background, goal, obstacles, agent
    assert ObstacleEnv().render() is None
    trajectories, successes = [], []
    for seed in range(5):
        obs_seq, _, infos = run_obstacle_episode(ObstacleEnv(), ObstacleExpert(seed=seed), seed=seed)
        trajectories.append(obs_seq)
        successes.append(bool(infos[-1]["success"]))
    trajectories.append(np.array([[0.5, 0.06], [0.5, 0.12]]))
    successes.append(False)
    out = tmp_path / "plots" / "rollouts.png"
    plot_obstacle_rollouts(trajectories, successes, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ScorePolicyError):
        plot_obstacle_rollouts(trajectories, successes[:-1], out)
