"""Windows and edge padding on hand-made episodes."""

from __future__ import annotations

import numpy as np
import pytest

from scorepolicy.data.windows import WindowDataset, min_max_stats, split_episodes, window_indices
from scorepolicy.errors import ScorePolicyError


def test_window_indices_pad_at_both_edges_of_each_episode() -> None:
    # two episodes: steps 0..3 and 4..5
    obs_idx, act_idx = window_indices(np.array([4, 6]), n_obs_steps=2, horizon=3)
    assert obs_idx.tolist() == [[0, 0], [0, 1], [1, 2], [2, 3], [4, 4], [4, 5]]
    assert act_idx.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 3], [3, 3, 3], [4, 5, 5], [5, 5, 5]]


def test_batch_gathers_the_values_of_a_hand_made_episode() -> None:
    obs = np.arange(10, dtype=np.float32).reshape(5, 2)  # rows [0,1],[2,3],...
    act = -np.arange(5, dtype=np.float32).reshape(5, 1)
    ds = WindowDataset(obs, act, np.array([5]), n_obs_steps=2, horizon=4)
    assert len(ds) == 5
    b = ds.batch(np.array([0, 4]))
    assert b["obs"].shape == (2, 2, 2) and b["action"].shape == (2, 4, 1)
    assert b["obs"][0].tolist() == [[0, 1], [0, 1]]
    assert b["obs"][1].tolist() == [[6, 7], [8, 9]]
    assert b["action"][0, :, 0].tolist() == [0, -1, -2, -3]
    assert b["action"][1, :, 0].tolist() == [-4, -4, -4, -4]


def test_nan_actions_name_the_step_and_episode() -> None:
    act = np.zeros((6, 2), dtype=np.float32)
    act[4, 1] = np.nan
    with pytest.raises(ScorePolicyError, match=r"actions: NaN or inf at step 4 \(episode 1\)"):
        WindowDataset(np.zeros((6, 3)), act, np.array([3, 6]), 2, 4)


def test_split_is_seeded_disjoint_and_capped() -> None:
    train, val = split_episodes(206, 0.02, seed=42, max_train=90)
    assert len(train) == 90 and len(val) == 4
    assert not set(train) & set(val)
    again = split_episodes(206, 0.02, seed=42, max_train=90)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not np.array_equal(train, split_episodes(206, 0.02, seed=1, max_train=90)[0])


def test_min_max_stats() -> None:
    s = min_max_stats(np.array([[0.0, 5.0], [2.0, -1.0]]))
    assert s["min"].tolist() == [0.0, -1.0] and s["max"].tolist() == [2.0, 5.0]
