"""Conformal thresholds meet δ: simulated calibration sets and fresh episodes of known score distributions."""

from __future__ import annotations

import numpy as np
import pytest

from scorepolicy.errors import ScorePolicyError
from scorepolicy.guard.monitor import conformal_threshold, normalized_thresholds, thresholds_for, windowed

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


def _trending(rng: np.random.Generator, n: int, shift: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Episodes of two correlated score traces whose level rises over the episode (as novelty does near a
    task's end); `shift` adds a bump to both scores in the first decisions (an early failure)."""
    lengths = rng.integers(8, 25, size=n)
    e = rng.exponential(1.0, size=(3, n, 24))
    level = 1.0 + 0.3 * np.arange(24)
    bump = np.where(np.arange(24) < 4, shift, 0.0)
    a = level * (0.5 * e[0] + 0.5 * e[1]) + bump
    b = 0.01 * (level * (0.5 * e[0] + 0.5 * e[2]) + bump)
    return [(a[i, :k], b[i, :k]) for i, k in enumerate(lengths)]


def _normalized_rate(rng: np.random.Generator, rule: str, delta: float, shift: float, n_sim: int) -> float:
    window, alarms = 2, 0
    for _ in range(n_sim):
        fit, held = _trending(rng, 20), _trending(rng, 29)
        th = normalized_thresholds(
            {"rnd": [a for a, _ in held], "ace": [b for _, b in held]},
            {"rnd": [a for a, _ in fit], "ace": [b for _, b in fit]},
            delta,
            window,
            rule,
        )
        a, b = _trending(rng, 1, shift)[0]
        over = {
            k: windowed(x, window) > th[k][np.minimum(np.arange(len(x)), len(th[k]) - 1)]
            for k, x in (("rnd", a), ("ace", b))
        }
        alarms += bool((over["rnd"] & over["ace"] if rule == "and" else over[rule]).any())
    return alarms / n_sim


@pytest.mark.parametrize(("rule", "delta"), [("and", 0.1), ("rnd", 0.1)])
def test_normalized_thresholds_keep_delta_per_episode(rule: str, delta: float) -> None:
    """Time-varying thresholds γ·a(t) with the shape from other episodes: a fresh success's alarm rate
    (the AND alarm itself under rule 'and') is in [δ − 1/(n+1), δ], as for one conformal quantile."""
    n_sim = 800
    rate = _normalized_rate(np.random.default_rng(3), rule, delta, 0.0, n_sim)
    assert rate <= delta + _mc_slack(delta, n_sim)
    assert rate >= delta - 1 / 30 - _mc_slack(delta, n_sim)


def test_normalized_thresholds_catch_early_failures_a_constant_threshold_misses() -> None:
    """An early bump below the successes' late-episode level: the constant threshold (set by the late
    maxima) rarely alarms, the normalized one (low early, where successes are low) mostly does."""
    rng = np.random.default_rng(4)
    caught_normalized = _normalized_rate(rng, "and", 0.1, 6.0, 200)
    caught_constant = 0
    for _ in range(200):
        held = _trending(rng, 29)
        ga = thresholds_for([a for a, _ in held], 0.1, 2, "episode", "a")[0]
        gb = thresholds_for([b for _, b in held], 0.1, 2, "episode", "b")[0]
        a, b = _trending(rng, 1, 6.0)[0]
        caught_constant += bool(((windowed(a, 2) > ga) & (windowed(b, 2) > gb)).any())
    assert caught_normalized > 0.6
    assert caught_normalized > caught_constant / 200 + 0.3
