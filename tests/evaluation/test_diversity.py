"""Behaviour diversity: closed-form entropies, context averaging, KL, and the tasks' behaviour labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scorepolicy.envs.obstacles import OBSTACLE_TASK, route_entropy
from scorepolicy.envs.pusht import APPROACH_SIDES, PUSHT_TASK, pusht_approach_side, pusht_first_approach
from scorepolicy.evaluation.diversity import (
    behaviour_entropy,
    behaviour_kl,
    conditional_behaviour_entropy,
    diversity_metrics,
)


def test_entropy_closed_forms() -> None:
    assert behaviour_entropy(list(range(24)), 24) == pytest.approx(1.0)
    assert behaviour_entropy([3] * 10, 24) == 0.0
    assert behaviour_entropy([], 24) == 0.0
    # k equally likely behaviours out of |B|: log k / log |B|
    for k in (2, 6, 12):
        assert behaviour_entropy(list(range(k)) * 5, 24) == pytest.approx(math.log(k) / math.log(24))
    # p = (3/4, 1/4) over |B| = 4: −(¾ ln ¾ + ¼ ln ¼) / ln 4
    want = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(4)
    assert behaviour_entropy([0, 0, 0, 1], 4) == pytest.approx(want)
    assert behaviour_entropy([0, 1, -1, -1], 2) == pytest.approx(1.0)  # −1 (no behaviour) is ignored


def test_conditional_entropy_averages_contexts() -> None:
    # context 0: two behaviours equally (H = 1 in base 2... here base 4: ln2/ln4 = ½); context 1: one (H = 0)
    labels = [0, 1, 2, 2]
    contexts = ["c0", "c0", "c1", "c1"]
    assert conditional_behaviour_entropy(labels, contexts, 4) == pytest.approx(0.25)
    # a context with no labelled rollout is dropped (D3IL Sorting/Stacking) or counts as 0
    labels2, contexts2 = [*labels, -1], [*contexts, "c2"]
    assert conditional_behaviour_entropy(labels2, contexts2, 4) == pytest.approx(0.25)
    assert conditional_behaviour_entropy(labels2, contexts2, 4, drop_empty=False) == pytest.approx(0.5 / 3)
    # pooled entropy is at least the context average (concavity)
    assert behaviour_entropy(labels, 4) >= 0.25


def test_kl_to_data_distribution() -> None:
    uniform = np.full(4, 0.25)
    assert behaviour_kl([0, 1, 2, 3], uniform, 4) == pytest.approx(0.0, abs=1e-9)
    # KL = −H − Σ π log p_data with a uniform p_data is 1 − H in base |B|
    assert behaviour_kl([0, 0, 0, 1], uniform, 4) == pytest.approx(1.0 - behaviour_entropy([0, 0, 0, 1], 4))
    assert behaviour_kl([0], [0.5, 0.5, 0.0, 0.0], 4) == pytest.approx(math.log(2) / math.log(4))
    assert behaviour_kl([3], [0.5, 0.5, 0.0, 0.0], 4) > 10  # a behaviour the data never shows


def test_diversity_metrics_count_successes_only() -> None:
    records = [
        {"seed": 0, "success": 1.0, "route": 0},
        {"seed": 1, "success": 1.0, "route": 5},
        {"seed": 2, "success": 0.0, "route": 7},  # failed: its behaviour does not count
        {"seed": 3, "error": "boom", "success": 0.0},
    ]
    out = diversity_metrics(records, "route", 24, data_probs=[1 / 24] * 24)
    assert out["n_behaviours_seen"] == 2
    assert out["behaviour_entropy"] == pytest.approx(math.log(2) / math.log(24))
    assert (
        out["behaviour_counts"][0] == 1
        and out["behaviour_counts"][5] == 1
        and sum(out["behaviour_counts"]) == 2
    )
    assert out["behaviour_kl"] == pytest.approx(1.0 - out["behaviour_entropy"])
    assert "conditional_behaviour_entropy" not in out  # one rollout per seed
    repeated = [{"seed": s, "success": 1.0, "route": r} for s, r in [(0, 1), (0, 2), (1, 3), (1, 3)]]
    cond = diversity_metrics(repeated, "route", 24)["conditional_behaviour_entropy"]
    assert cond == pytest.approx(0.5 * math.log(2) / math.log(24))


def test_obstacle_task_uses_the_shared_definition() -> None:
    routes = [1, 1, 4, 9, 9, 9]
    assert route_entropy(routes) == behaviour_entropy(routes, 24)
    assert OBSTACLE_TASK.behaviour_key == "route" and OBSTACLE_TASK.n_behaviours == 24
    assert OBSTACLE_TASK.behaviour_prior is not None and sum(OBSTACLE_TASK.behaviour_prior) == pytest.approx(
        1.0
    )


def test_pusht_approach_side_geometry() -> None:
    assert PUSHT_TASK.behaviour_key == "approach_side" and PUSHT_TASK.n_behaviours == len(APPROACH_SIDES) == 4
    block = (256.0, 256.0)
    # block frame = world frame at angle 0: the bar spans y 0..30 (x ±60), the stem y 30..120 (x ±15)
    cases = {
        (-40.0, -10.0): "bar-left",
        (40.0, -10.0): "bar-right",
        (-25.0, 100.0): "stem-left",
        (25.0, 100.0): "stem-right",
    }
    for (x, y), name in cases.items():
        state = np.array([block[0] + x, block[1] + y, *block, 0.0])
        assert APPROACH_SIDES[pusht_approach_side(state)] == name
    assert pusht_approach_side(np.array([block[0] + 200.0, block[1], *block, 0.0])) == -1
    # rotating the block and the agent together keeps the side
    theta = 1.1
    c, s = math.cos(theta), math.sin(theta)
    x, y = 25.0, 100.0
    rotated = np.array([block[0] + c * x - s * y, block[1] + s * x + c * y, *block, theta])
    assert APPROACH_SIDES[pusht_approach_side(rotated)] == "stem-right"
    far = np.array([block[0] + 300.0, block[1], *block, 0.0])
    near = np.array([block[0] - 40.0, block[1] - 10.0, *block, 0.0])
    assert pusht_first_approach(np.stack([far, far, near])) == 0
    assert pusht_first_approach(np.stack([far, far])) == -1
