"""Conformal thresholds meet δ: simulated calibration sets and fresh episodes of known score distributions."""

from __future__ import annotations

import numpy as np
import pytest

from scorepolicy.errors import ScorePolicyError
from scorepolicy.guard.monitor import conformal_threshold, thresholds_for, windowed

N_SIM = 4000


def _mc_slack(p: float, n: int = N_SIM) -> float:
    """Four Monte-Carlo standard errors of a rate p estimated from n experiments."""
    return 4.0 * float(np.sqrt(p * (1 - p) / n))


def _episodes(rng: np.random.Generator, n: int, lo: int = 5, hi: int = 30) -> list[np.ndarray]:
    """Episodes of random length with i.i.d. exponential per-decision scores."""
    return [rng.exponential(1.0, size=int(rng.integers(lo, hi))) for _ in range(n)]


@pytest.mark.parametrize("delta", [0.05, 0.1])
def test_episode_threshold_false_alarm_rate_is_at_most_delta(delta: float) -> None:
    """Over many calibration sets, a fresh episode's windowed maximum exceeds the threshold with probability
    in [δ − 1/(n+1), δ] (exact split conformal: neither too many false alarms nor needlessly few)."""
    rng = np.random.default_rng(0)
    n, window, alarms = 39, 3, 0
    for _ in range(N_SIM):
        gamma = thresholds_for(_episodes(rng, n), delta, window, "episode", "test")[0]
        fresh = _episodes(rng, 1)[0]
        alarms += bool((windowed(fresh, window) > gamma).any())
    rate = alarms / N_SIM
    assert rate <= delta + _mc_slack(delta)
    assert rate >= delta - 1 / (n + 1) - _mc_slack(delta)


def test_and_rule_of_two_scores_keeps_delta() -> None:
    """FIPER's rule (alarm when both scores exceed at the same decision) stays ≤ δ with correlated scores."""
    rng = np.random.default_rng(1)
    n, window, delta, alarms = 30, 2, 0.1, 0
    for _ in range(N_SIM):
        cal = [
            rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], size=int(rng.integers(5, 20)))
            for _ in range(n)
        ]
        ga = thresholds_for([c[:, 0] for c in cal], delta, window, "episode", "a")[0]
        gb = thresholds_for([c[:, 1] for c in cal], delta, window, "episode", "b")[0]
        f = rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], size=int(rng.integers(5, 20)))
        alarms += bool(((windowed(f[:, 0], window) > ga) & (windowed(f[:, 1], window) > gb)).any())
    assert alarms / N_SIM <= delta + _mc_slack(delta)


def test_step_thresholds_cover_each_decision() -> None:
    """The per-step variant: at each decision index the false-alarm rate of that step is ≤ δ."""
    rng = np.random.default_rng(2)
    n, delta, length = 19, 0.05, 6
    hits = np.zeros(length)
    for _ in range(N_SIM):
        th = thresholds_for([rng.normal(size=length) for _ in range(n)], delta, 1, "step", "test")
        hits += rng.normal(size=length) > th
    assert (hits / N_SIM <= delta + _mc_slack(delta)).all()


def test_too_few_episodes_is_a_one_line_error() -> None:
    assert conformal_threshold(np.arange(19.0), 0.05) == 18.0  # k = ceil(20 · 0.95) = 19: the largest
    with pytest.raises(ScorePolicyError, match="needs at least 19") as err:
        conformal_threshold(np.arange(18.0), 0.05)
    assert "\n" not in str(err.value)


def test_windowed_sums_match_a_direct_sum() -> None:
    x = np.arange(1.0, 8.0)
    assert windowed(x, 3).tolist() == [1, 3, 6, 9, 12, 15, 18]
    assert windowed(x, 1).tolist() == x.tolist()
