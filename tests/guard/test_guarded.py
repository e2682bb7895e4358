"""GuardedPolicy: acts exactly as the policy, alarms online as the monitor does offline, per-episode noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.waves import run_rollouts
from scorepolicy.guard import Alarm, GuardedPolicy
from tests.guard.helpers import point_monitor, point_setup

GUARD_KEYS = {"alarm", "first_alarm_step", "guard_scores"}


@pytest.mark.parametrize("sampler", ["euler_ancestral", "ddim"])
def test_guarding_never_changes_the_episodes(sampler: str) -> None:
    policy, task = point_setup(sampler)
    monitor = point_monitor(policy, task)
    seeds = range(1000, 1012)
    plain = run_rollouts(policy, task, seeds, n_envs=5, progress=False)
    guarded = run_rollouts(
        GuardedPolicy(policy, monitor, keep_scores=True).rollout_policy(),
        task,
        seeds,
        n_envs=5,
        progress=False,
    )
    assert [{k: v for k, v in r.items() if k not in GUARD_KEYS} for r in guarded] == plain
    assert all(set(r) >= GUARD_KEYS for r in guarded)


@pytest.mark.parametrize("style", ["episode", "step", "normalized"])
def test_online_alarms_equal_the_monitor_offline(style: str) -> None:
    """The first alarm recorded during the rollout is the one `Monitor.first_alarm` finds on the episode's
    recorded scores; records do not depend on how many envs run together."""
    policy, task = point_setup()
    delta = (
        0.8 if style == "normalized" else 0.5
    )  # low thresholds: some alarms (the joint AND scale is higher)
    monitor = point_monitor(policy, task).recalibrated(delta=delta, style=style)
    seeds = range(2000, 2016)
    records = run_rollouts(
        GuardedPolicy(policy, monitor, keep_scores=True).rollout_policy(),
        task,
        seeds,
        n_envs=8,
        progress=False,
    )
    alarmed = 0
    for r in records:
        scores = r["guard_scores"]
        first = monitor.first_alarm(np.array(scores["rnd"]), np.array(scores["ace"]))
        expected = None if first is None else scores["steps"][first]
        assert r["first_alarm_step"] == expected and r["alarm"] == (first is not None)
        assert scores["steps"] == list(range(0, r["length"], policy.cfg.n_action_steps))
        alarmed += r["alarm"]
    assert 0 < alarmed < len(records)
    again = run_rollouts(
        GuardedPolicy(policy, monitor, keep_scores=True).rollout_policy(),
        task,
        seeds,
        n_envs=3,
        progress=False,
    )
    assert again == records


def test_single_observation_gives_plain_alarm_values() -> None:
    policy, task = point_setup()
    monitor = point_monitor(policy, task)
    guarded = GuardedPolicy(policy, monitor)
    guarded.reset(seed=0)
    action, alarm = guarded.select_action(np.array([0.1, 0.5], dtype=np.float32))
    assert isinstance(alarm, Alarm) and isinstance(alarm.raised, bool)
    assert action.shape == (1,) and set(alarm.scores) == set(alarm.thresholds) == {"rnd", "ace"}
    assert all(isinstance(v, float) for v in alarm.scores.values())
    policy.reset(seed=0)
    assert np.array_equal(action, policy.select_action(np.array([0.1, 0.5], dtype=np.float32)))


def test_bad_observations_are_one_line_errors() -> None:
    """The guarded decision encodes each observation once itself: it refuses what the policy would."""
    policy, task = point_setup("ddim")
    guarded = GuardedPolicy(policy, point_monitor(policy, task))
    guarded.reset(seed=0)
    with pytest.raises(ScorePolicyError, match="NaN or inf"):
        guarded.select_action(np.array([np.nan, 0.5], dtype=np.float32))
    with pytest.raises(ScorePolicyError, match="expected shape"):
        guarded.decide(torch.zeros(1, policy.cfg.n_obs_steps, 3))
