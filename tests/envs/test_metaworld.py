"""Meta-World tasks: seeded goals, the goal inside the observation, expert demos, per-task evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("metaworld", reason="Meta-World not installed (pip install 'scorepolicy[metaworld]')")

from scorepolicy.cli import main
from scorepolicy.data.zarr_replay import read_replay_zarr
from scorepolicy.envs.metaworld import (
    DEMO_SEED_BASE,
    MT10,
    MetaWorldEnv,
    generate_metaworld_demos,
    metaworld_task,
    resolve_tasks,
)
from scorepolicy.errors import ScorePolicyError

TWO = ("reach-v3", "button-press-topdown-v3")


def test_seed_picks_task_and_goal_deterministically() -> None:
    env = MetaWorldEnv(TWO)
    obs_a, info_a = env.reset(seed=3)
    obs_b, _ = env.reset(seed=3)
    assert obs_a.shape == (40,) and obs_a.dtype == np.float32
    np.testing.assert_array_equal(obs_a, obs_b)
    assert info_a["task"] == TWO[3 % 2] and obs_a[36] == 3 % 2
    np.testing.assert_allclose(obs_a[37:], info_a["goal"], atol=1e-6)
    _, info_c = env.reset(seed=5)
    assert info_c["task"] == info_a["task"] and not np.allclose(info_c["goal"], info_a["goal"])


def test_evaluation_goals_differ_from_demonstration_goals() -> None:
    env = MetaWorldEnv(("reach-v3",))
    demo = np.array([env.reset(seed=DEMO_SEED_BASE + i)[1]["goal"] for i in range(20)])
    evals = np.array([env.reset(seed=i)[1]["goal"] for i in range(20)])
    distance = np.linalg.norm(demo[:, None] - evals[None], axis=-1)
    assert distance.min() > 1e-4


def test_expert_demos_are_successful_and_carry_goals() -> None:
    episodes, report = generate_metaworld_demos(TWO, 2, progress=False)
    assert episodes.n_episodes == 4 and episodes.attrs["tasks"] == list(TWO)
    assert set(episodes.data) == {"obs", "action", "task_index", "goal"}
    np.testing.assert_allclose(episodes.data["obs"][:, 37:], episodes.data["goal"], atol=1e-6)
    np.testing.assert_array_equal(episodes.data["obs"][:, 36], episodes.data["task_index"])
    assert np.abs(episodes.data["action"]).max() <= 1.0
    for name in TWO:
        assert report[name]["successes"] == 2 and 0 < report[name]["success_rate"] <= 1
    # replaying an episode's actions from its seed reaches success (the record ends at the first success)
    env = MetaWorldEnv(TWO)
    obs, _ = env.reset(seed=DEMO_SEED_BASE)  # first attempt of the first task
    first = slice(0, int(episodes.episode_ends[0]))
    np.testing.assert_allclose(obs, episodes.data["obs"][0], atol=1e-6)
    infos = [env.step(a)[4] for a in episodes.data["action"][first]]
    assert infos[-1]["success"] == 1.0 and not any(i["success"] for i in infos[:-1])


def test_unknown_task_names_list_the_valid_ones() -> None:
    assert resolve_tasks("mt10") == MT10
    assert resolve_tasks("reach-v3, push-v3") == ("reach-v3", "push-v3")
    with pytest.raises(ScorePolicyError, match=r"unknown Meta-World task .reach-v9.*valid: mt10"):
        resolve_tasks("reach-v9")


def test_generate_cli_writes_a_dataset_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mw"
    assert (
        main(["data", "generate", "metaworld", "--tasks", "reach-v3", "--episodes", "2", "--out", str(out)])
        == 0
    )
    assert "reach-v3" in capsys.readouterr().out
    episodes = read_replay_zarr(out)
    assert episodes.n_episodes == 2 and episodes.attrs["expert"]["reach-v3"]["successes"] == 2
    assert main(["data", "generate", "metaworld", "--tasks", "reach-v3", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_task_checks_the_datasets_task_list() -> None:
    episodes, _ = generate_metaworld_demos(("reach-v3",), 1, progress=False)
    assert metaworld_task(("reach-v3",), "t").dataset_obs(episodes).shape == (episodes.n_steps, 40)
    with pytest.raises(ScorePolicyError, match="attribute 'tasks'"):
        metaworld_task(TWO, "t").dataset_obs(episodes)


def test_peg_insert_side_alone_replays_the_mt10_episodes_of_that_task() -> None:
    from scorepolicy.envs.registry import get_task

    task = get_task("metaworld-mt10", subtask="peg-insert-side")
    assert task.name == "metaworld-mt10:peg-insert-side-v3" and task.n_subtasks == 1
    obs, info = task.make_env(None).reset(seed=2)
    full, full_info = MetaWorldEnv(MT10).reset(seed=2 * 10 + 7)
    assert info["task"] == full_info["task"] == "peg-insert-side-v3" and obs[36] == 7
    np.testing.assert_array_equal(obs, full)
    with pytest.raises(ScorePolicyError, match="valid: reach-v3"):
        get_task("metaworld-mt10", subtask="peg-insert")
