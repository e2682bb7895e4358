"""Tests for the Push-T task: observation mapping, exact reset, replay of recorded episodes, metrics."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gym_pusht")

from scorepolicy.core.episodes import Episodes
from scorepolicy.data.zarr_replay import read_replay_zarr
from scorepolicy.envs.pusht import (
    PUSHT_TASK,
    PushTStateEnv,
    make_pusht_env,
    pusht_aggregate_metrics,
    pusht_episode_metrics,
    pusht_obs_from_state,
)
from scorepolicy.errors import ScorePolicyError

REPO_ROOT = Path(__file__).resolve().parents[2]
POS_TOL_PX = 0.03
SINCOS_TOL = 1e-3
QUICK_EPISODES = (0, 51, 102, 153, 205)


@pytest.fixture(scope="module")
def pusht_episodes() -> Episodes:
    """The shared Push-T demonstrations (state/action only), or skip when absent."""
    default = REPO_ROOT.parent / "shared" / "data" / "pusht_cchi_v7_replay.zarr"
    path = Path(os.environ.get("SCOREPOLICY_PUSHT_ZARR", str(default)))
    if not path.is_dir():
        pytest.skip(f"Push-T replay zarr not found at {path} (set SCOREPOLICY_PUSHT_ZARR to its location)")
    return read_replay_zarr(path, keys=["state", "action"])


@pytest.fixture(scope="module")
def env() -> Iterator[PushTStateEnv]:
    made = make_pusht_env(None)
    yield made
    made.close()


def replay_errors(env: PushTStateEnv, episodes: Episodes, index: int) -> tuple[float, float, float]:
    """(reset position error, max step position error, max step sin/cos error) for one recorded episode."""
    part = episodes.episode_slice(index)
    states, actions = episodes.data["state"][part], episodes.data["action"][part]
    expected = pusht_obs_from_state(states)
    obs, _ = env.reset(seed=0, options={"reset_to_state": states[0]})
    reset_err = float(np.abs(obs[:4] - expected[0, :4]).max())
    pos_err = sincos_err = 0.0
    for t in range(len(states) - 1):
        obs, _, terminated, truncated, _ = env.step(actions[t])
        assert not (terminated or truncated), f"episode {index} ended early at step {t}"
        diff = np.abs(obs - expected[t + 1])
        pos_err, sincos_err = max(pos_err, float(diff[:4].max())), max(sincos_err, float(diff[4:].max()))
    return reset_err, pos_err, sincos_err


def test_obs_from_state_mapping() -> None:
    state = np.array([10.0, 20.0, 30.0, 40.0, np.pi / 6])
    obs = pusht_obs_from_state(state)
    assert obs.dtype == np.float32 and obs.shape == (6,)
    np.testing.assert_allclose(obs, [10, 20, 30, 40, 0.5, np.sqrt(3) / 2], rtol=1e-6)
    batch = pusht_obs_from_state(np.tile(state.astype(np.float32), (3, 4, 1)))
    assert batch.shape == (3, 4, 6) and batch.dtype == np.float32
    with pytest.raises(ScorePolicyError, match="5 values"):
        pusht_obs_from_state(np.zeros((3, 4)))


def test_obs_angle_does_not_wrap() -> None:
    near_two_pi = pusht_obs_from_state(np.array([0, 0, 0, 0, 2 * np.pi - 1e-4]))
    near_zero = pusht_obs_from_state(np.array([0, 0, 0, 0, 1e-4]))
    assert np.abs(near_two_pi - near_zero).max() < 3e-4


def test_spaces_and_random_reset(env: PushTStateEnv) -> None:
    obs, info = env.reset(seed=PUSHT_TASK.default_seed)
    assert env.observation_space.shape == (6,) and env.observation_space.dtype == np.float32
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (2,)
    assert "coverage" not in info
    again, _ = env.reset(seed=PUSHT_TASK.default_seed)
    np.testing.assert_array_equal(obs, again)
    obs, _, _, _, info = env.step(np.array([256.0, 256.0]))
    assert obs.dtype == np.float32 and obs.shape == (6,)
    assert 0.0 <= info["coverage"] <= 1.0 and "is_success" in info


@pytest.mark.parametrize("snap", [True, False])
def test_reset_to_arbitrary_state_is_exact(snap: bool) -> None:
    env = PushTStateEnv(make_pusht_env(None).env, snap_to_pixel_grid=snap)
    states = ([100.0, 150.0, 300.5, 260.25, 1.0], [400.0, 80.0, 200.0, 220.0, 5.5], [256, 400, 256, 300, 0])
    for state in states:
        obs, _ = env.reset(options={"reset_to_state": np.array(state)})
        np.testing.assert_allclose(env.raw_state(), state, atol=1e-9)
        np.testing.assert_allclose(obs, pusht_obs_from_state(np.array(state)), atol=1e-4)
    env.close()


def test_reset_to_bad_state(env: PushTStateEnv) -> None:
    with pytest.raises(ScorePolicyError, match="reset_to_state"):
        env.reset(options={"reset_to_state": [1.0, 2.0, 3.0]})


def test_render_rgb_array_headless() -> None:
    env = PUSHT_TASK.make_env("rgb_array")
    env.reset(seed=1)
    env.step(np.array([200.0, 200.0]))
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.std() > 0
    env.close()


def test_task_fields() -> None:
    assert (PUSHT_TASK.name, PUSHT_TASK.obs_dim, PUSHT_TASK.action_dim) == ("pusht", 6, 2)
    assert (PUSHT_TASK.max_steps, PUSHT_TASK.default_seed, PUSHT_TASK.stop_on_success) == (300, 100000, True)
    episodes = Episodes(
        data={"state": np.zeros((4, 5), np.float32), "action": np.ones((4, 2), np.float64)},
        episode_ends=np.array([2, 4]),
    )
    obs, actions = PUSHT_TASK.dataset_obs(episodes), PUSHT_TASK.dataset_actions(episodes)
    assert obs.shape == (4, 6) and obs.dtype == np.float32 and np.all(obs[:, 5] == 1.0)
    assert actions.shape == (4, 2) and actions.dtype == np.float32
    with pytest.raises(ScorePolicyError, match="'state'"):
        PUSHT_TASK.dataset_obs(Episodes(data={"action": np.ones((2, 2))}, episode_ends=np.array([2])))


def test_episode_metrics_from_infos() -> None:
    below = [{"coverage": c, "is_success": False} for c in (0.1, 0.5, 0.76, 0.3)]
    rec = pusht_episode_metrics(below)
    assert rec == pytest.approx({"max_coverage": 0.76, "score": 0.8, "success": 0.0, "approach_side": -1})
    exactly = pusht_episode_metrics([{"coverage": 0.95}])
    assert exactly["success"] == 0.0 and exactly["score"] == pytest.approx(1.0)
    above = pusht_episode_metrics([{"coverage": 0.2}, {"coverage": 0.97}, {"coverage": 0.5}])
    above_want = {"max_coverage": 0.97, "score": 1.0, "success": 1.0, "approach_side": -1}
    assert above == pytest.approx(above_want)
    assert pusht_episode_metrics([]) == {
        "max_coverage": 0.0,
        "score": 0.0,
        "success": 0.0,
        "approach_side": -1,
    }
    assert pusht_episode_metrics([{"coverage": 0.1, "approach_side": 2}])["approach_side"] == 2
    assert PUSHT_TASK.episode_metrics is pusht_episode_metrics


def test_aggregate_metrics() -> None:
    records = [
        {"score": 1.0, "max_coverage": 0.97, "success": 1.0},
        {"score": 0.5, "max_coverage": 0.475, "success": 0.0},
        {"success": 0.0},
    ]
    agg = pusht_aggregate_metrics(records)
    assert agg == pytest.approx({"mean_score": 0.75, "mean_max_coverage": 0.7225})
    assert pusht_aggregate_metrics([{"success": 1.0}]) == {}


def test_dataset_mapping_matches_reset(env: PushTStateEnv, pusht_episodes: Episodes) -> None:
    obs_all = PUSHT_TASK.dataset_obs(pusht_episodes)
    assert obs_all.shape == (25650, 6)
    for index in QUICK_EPISODES:
        first = pusht_episodes.episode_starts[index]
        obs, _ = env.reset(options={"reset_to_state": pusht_episodes.data["state"][first]})
        assert np.abs(obs[:4] - obs_all[first, :4]).max() < POS_TOL_PX
        assert np.abs(obs[4:] - obs_all[first, 4:]).max() < 1e-5


def test_replay_recorded_episodes(env: PushTStateEnv, pusht_episodes: Episodes) -> None:
    for index in QUICK_EPISODES:
        reset_err, pos_err, sincos_err = replay_errors(env, pusht_episodes, index)
        assert reset_err < POS_TOL_PX, f"episode {index}: reset off by {reset_err:.4f} px"
        assert pos_err < POS_TOL_PX, f"episode {index}: replay off by {pos_err:.4f} px"
        assert sincos_err < SINCOS_TOL, f"episode {index}: sin/cos off by {sincos_err:.2e}"


@pytest.mark.skipif(os.environ.get("SCOREPOLICY_SLOW") != "1", reason="full replay: set SCOREPOLICY_SLOW=1")
def test_replay_all_recorded_episodes(env: PushTStateEnv, pusht_episodes: Episodes) -> None:
    errors = np.array([replay_errors(env, pusht_episodes, i) for i in range(pusht_episodes.n_episodes)])
    worst = errors.max(axis=0)
    print(
        f"\nfull replay: max reset {worst[0]:.2e} px, max step {worst[1]:.4f} px (episode "
        f"{int(errors[:, 1].argmax())}), max sin/cos {worst[2]:.2e}"
    )
    assert worst[0] < POS_TOL_PX and worst[1] < POS_TOL_PX and worst[2] < SINCOS_TOL


def test_fast_env_matches_gym_pusht_exactly() -> None:
    """FastPushTEnv gives bit-identical states, terminations and contact counts to gym-pusht's PushTEnv,
    and the same coverage to 1e-12, on random targets and on targets at the block (contacts, coverage
    changes). gym-pusht sums the coverage over a set of shapes whose order follows object addresses, so
    its last bit varies between processes; bit-identity of the coverage cannot be asked for."""
    from gym_pusht.envs.pusht import PushTEnv

    from scorepolicy.envs.pusht_fast import FastPushTEnv

    slow, fast = (
        PushTEnv(obs_type="state", render_mode=None),
        FastPushTEnv(obs_type="state", render_mode=None),
    )
    rng = np.random.default_rng(0)
    contacts = 0
    for seed in range(3):
        obs_slow, _ = slow.reset(seed=seed)
        obs_fast, _ = fast.reset(seed=seed)
        assert np.array_equal(obs_slow, obs_fast)
        for t in range(200):
            near_block = obs_fast[2:4] + rng.normal(0.0, 25.0, 2)
            action = (near_block if t % 3 else rng.uniform(0.0, 512.0, 2)).astype(np.float32)
            obs_slow, r_slow, term_slow, _, info_slow = slow.step(action)
            obs_fast, r_fast, term_fast, _, info_fast = fast.step(action)
            assert np.array_equal(obs_slow, obs_fast), (seed, t)
            assert term_slow == term_fast
            assert r_fast == pytest.approx(r_slow, abs=1e-12)
            assert info_fast["coverage"] == pytest.approx(info_slow["coverage"], abs=1e-12)
            assert info_slow["n_contacts"] == info_fast["n_contacts"]
            np.testing.assert_array_equal(info_slow["block_pose"], info_fast["block_pose"])
            contacts += info_fast["n_contacts"]
    assert contacts > 0  # the comparison covered contact-rich steps


def test_polygon_clip_closed_forms() -> None:
    """Sutherland-Hodgman clip + shoelace area on squares whose overlaps are known."""
    from scorepolicy.envs.pusht_fast import clip_convex, polygon_area

    def square(x: float, y: float, side: float) -> list[tuple[float, float]]:
        return [(x, y), (x + side, y), (x + side, y + side), (x, y + side)]

    assert polygon_area(square(0, 0, 2)) == 4.0
    assert polygon_area(clip_convex(square(0, 0, 2), square(1, 1, 2))) == pytest.approx(1.0)
    assert polygon_area(clip_convex(square(0, 0, 1), square(-1, -1, 3))) == pytest.approx(1.0)  # inside
    assert clip_convex(square(0, 0, 1), square(5, 5, 1)) == []
    diamond = [(1.0, 0.0), (2.0, 1.0), (1.0, 2.0), (0.0, 1.0)]  # area 2
    assert polygon_area(clip_convex(diamond, square(0, 0, 2))) == pytest.approx(2.0)
    assert polygon_area(clip_convex(diamond, square(1, 0, 1))) == pytest.approx(0.5)


def test_fast_coverage_matches_shapely_near_the_goal() -> None:
    """Coverage of block poses around the goal (0 to almost 1) agrees with gym-pusht's shapely one."""
    from gym_pusht.envs.pusht import PushTEnv

    from scorepolicy.envs.pusht_fast import FastPushTEnv

    env = FastPushTEnv(obs_type="state", render_mode=None)
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    coverages = []
    for _ in range(300):
        env.block.position = tuple(256.0 + rng.normal(0.0, 25.0, 2))
        env.block.angle = np.pi / 4 + rng.normal(0.0, 0.4)
        fast = env._get_coverage()
        assert fast == pytest.approx(PushTEnv._get_coverage(env), abs=1e-12)
        coverages.append(fast)
    assert min(coverages) < 0.2 and max(coverages) > 0.9


def test_gym_pusht_is_pinned_to_the_version_the_fast_env_was_tested_on() -> None:
    """pyproject pins gym-pusht exactly (extras pusht and dev) to FastPushTEnv's tested version, which is
    the one installed here (so the parity test above ran against it)."""
    import re

    from scorepolicy.envs.pusht_fast import TESTED_GYM_PUSHT, installed_gym_pusht_version

    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    pusht_extra = re.search(r"^pusht = \[(.*)\]$", pyproject, re.MULTILINE)
    assert pusht_extra is not None and pusht_extra.group(1) == f'"gym-pusht=={TESTED_GYM_PUSHT}"'
    dev_extra = re.search(r"^dev = \[(.*?)^\]", pyproject, re.MULTILINE | re.DOTALL)
    assert dev_extra is not None
    assert re.findall(r'"gym-pusht[^"]*"', dev_extra.group(1)) == [f'"gym-pusht=={TESTED_GYM_PUSHT}"']
    assert installed_gym_pusht_version() == TESTED_GYM_PUSHT


def test_another_gym_pusht_version_is_refused_by_the_fast_env_and_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under another gym-pusht version FastPushTEnv is a one-line error; make_pusht_env warns and steps
    gym-pusht's own PushTEnv instead."""
    from gym_pusht.envs.pusht import PushTEnv

    from scorepolicy.envs import pusht_fast

    assert type(make_pusht_env().env.unwrapped) is pusht_fast.FastPushTEnv
    monkeypatch.setattr(pusht_fast, "installed_gym_pusht_version", lambda: "0.2.0")
    with pytest.raises(ScorePolicyError, match=r"gym-pusht 0\.2\.0 .*gym-pusht==0\.1\.8") as err:
        pusht_fast.FastPushTEnv(obs_type="state", render_mode=None)
    assert "\n" not in str(err.value)
    with pytest.warns(RuntimeWarning, match="PushTEnv"):
        env = make_pusht_env()
    assert type(env.env.unwrapped) is PushTEnv
    env.reset(seed=0)
    obs2, *_ = env.step(np.array([256.0, 256.0], dtype=np.float32))
    assert obs2.shape == (6,) and np.isfinite(obs2).all()
    assert type(make_pusht_env(fast=False).env.unwrapped) is PushTEnv
