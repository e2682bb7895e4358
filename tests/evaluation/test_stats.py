"""Statistics: intervals, exact tests vs scipy, error rates and power against simulation, letters, Welch."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy import stats as sps

from scorepolicy.evaluation.stats import (
    barnard_pvalue,
    barnard_pvalue_table,
    clopper_pearson_interval,
    compact_letter_display,
    exact_test,
    fisher_pvalue_table,
    pairwise_tests,
    plan_sample_size,
    rejection_probability,
    simulate_rejections,
    success_posterior,
    welch_test,
    wilson_interval,
)

N_SIM = 20000
ALPHA = 0.05


def _mc_slack(p: float, n: int = N_SIM) -> float:
    """Four Monte-Carlo standard errors of a rate p estimated from n experiments."""
    return 4.0 * float(np.sqrt(p * (1 - p) / n))


def test_clopper_pearson_reference_and_nesting() -> None:
    # 0 of 10: upper bound 1 - 0.025^(1/10) in closed form.
    assert clopper_pearson_interval(0, 10) == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)))
    assert clopper_pearson_interval(10, 10) == pytest.approx((0.025 ** (1 / 10), 1.0))
    for k in (1, 5, 9):
        cp, wi = clopper_pearson_interval(k, 10), wilson_interval(k, 10)
        assert cp[0] <= wi[0] and cp[1] >= wi[1]  # the exact interval is the wider one here


def test_success_posterior_is_beta_one_plus_counts() -> None:
    post = success_posterior(7, 10)
    assert (post.a, post.b) == (8.0, 4.0)
    assert post.mean == pytest.approx(8 / 12)
    lo, hi = post.interval(0.9)
    assert sps.beta.cdf(lo, 8, 4) == pytest.approx(0.05) and sps.beta.cdf(hi, 8, 4) == pytest.approx(0.95)
    draws = post.sample(20000, np.random.default_rng(0))
    assert draws.mean() == pytest.approx(post.mean, abs=0.01)


def test_fisher_table_matches_scipy() -> None:
    table = fisher_pvalue_table(13, 9)
    for s1 in range(14):
        for s2 in range(10):
            ref = sps.fisher_exact([[s1, s2], [13 - s1, 9 - s2]]).pvalue
            assert table[s1, s2] == pytest.approx(ref, rel=1e-9, abs=1e-12)


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat. Med. 17:857-872,
# Table II, methods 3 (Wilson score) and 5 (Clopper-Pearson exact), to the 4 decimals printed there.
NEWCOMBE = [
    (81, 263, (0.2553, 0.3662), (0.2527, 0.3676)),
    (15, 148, (0.0624, 0.1605), (0.0578, 0.1617)),
    (0, 20, (0.0, 0.1611), (0.0, 0.1684)),
    (1, 29, (0.0061, 0.1718), (0.0009, 0.1776)),
]


@pytest.mark.parametrize(("k", "n", "wilson", "exact"), NEWCOMBE)
def test_intervals_match_published_values(
    k: int, n: int, wilson: tuple[float, float], exact: tuple[float, float]
) -> None:
    assert wilson_interval(k, n) == pytest.approx(wilson, abs=5e-5)
    assert clopper_pearson_interval(k, n) == pytest.approx(exact, abs=5e-5)


def test_intervals_match_scipy_binomtest() -> None:
    for n in (1, 2, 7, 50, 333):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for conf in (0.8, 0.95, 0.99):
                ci = sps.binomtest(k, n)
                w = ci.proportion_ci(confidence_level=conf, method="wilson")
                e = ci.proportion_ci(confidence_level=conf, method="exact")
                assert wilson_interval(k, n, conf) == pytest.approx((w.low, w.high), abs=1e-12)
                assert clopper_pearson_interval(k, n, conf) == pytest.approx((e.low, e.high), abs=1e-12)


# R package Barnard, barnard.test(s1, s2, f1, f2, dp=1e-6, pooled=TRUE), as recorded in scipy's tests of
# barnard_exact: (s1, n1, s2, n2) -> two-sided p-value.
BARNARD_R = [
    ((43, 53, 40, 79), 0.000362832367),
    ((100, 1100, 2, 7), 0.135126970878),
    ((2, 10, 7, 9), 0.019210815430),
    ((5, 15, 1, 11), 0.156277546306),
    ((5, 25, 15, 35), 0.066363501421),
    ((5, 25, 16, 41), 0.116984852192),
    ((10, 20, 5, 6), 0.177536588915),
    ((5, 6, 0, 4), 0.013671875000),
    ((0, 3, 1, 3), 0.509667991877),
    ((0, 6, 2, 6), 0.197019618792),
]


@pytest.mark.parametrize(("counts", "expected"), BARNARD_R)
def test_barnard_matches_published_values(counts: tuple[int, int, int, int], expected: float) -> None:
    assert barnard_pvalue(*counts) == pytest.approx(expected, rel=1e-7)
    assert exact_test(*counts, test="barnard") == barnard_pvalue(*counts)


def _rational_wald_squared(n1: int, n2: int) -> list[list[Fraction]]:
    """Squared pooled Wald statistic of every outcome (s1, s2), in exact rational arithmetic."""

    def t2(a: int, b: int) -> Fraction:
        pooled = Fraction(a + b, n1 + n2)
        var = pooled * (1 - pooled) * (Fraction(1, n1) + Fraction(1, n2))
        return (Fraction(a, n1) - Fraction(b, n2)) ** 2 / var if var else Fraction(0)

    return [[t2(a, b) for b in range(n2 + 1)] for a in range(n1 + 1)]


def _scipy_wald(n1: int, n2: int) -> np.ndarray:
    """|Wald statistic| of every outcome computed as scipy.stats.barnard_exact computes it (floats)."""
    p1, p2 = np.arange(n1 + 1)[:, None] / n1, np.arange(n2 + 1)[None, :] / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        wald = np.abs(p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    wald[p1 == p2] = 0
    return wald


@pytest.mark.parametrize(("n1", "n2"), [(5, 7), (8, 6), (10, 9)])
def test_barnard_equals_scipy_except_where_scipy_drops_exact_ties(n1: int, n2: int) -> None:
    exact_t2, wald = _rational_wald_squared(n1, n2), _scipy_wald(n1, n2)
    pis = np.linspace(0.0, 1.0, 20001)  # brute-force supremum over the common rate
    pmf1 = sps.binom.pmf(np.arange(n1 + 1)[:, None], n1, pis)
    pmf2 = sps.binom.pmf(np.arange(n2 + 1)[:, None], n2, pis)
    scipy_dropped_ties = 0
    for s1 in range(n1 + 1):
        for s2 in range(n2 + 1):
            ours = barnard_pvalue(s1, n1, s2, n2)
            ref = sps.barnard_exact([[s1, s2], [n1 - s1, n2 - s2]]).pvalue
            extreme = np.array([[t >= exact_t2[s1][s2] for t in row] for row in exact_t2])
            brute = float(((extreme.astype(float) @ pmf2) * pmf1).sum(axis=0).max())
            assert brute - 1e-12 <= ours <= brute + 1e-6
            if np.array_equal(wald >= wald[s1, s2], extreme):
                assert ours == pytest.approx(ref, rel=1e-6, abs=1e-12)
            else:  # scipy issue #18798: a tied outcome left out of scipy's tail makes its p-value smaller
                scipy_dropped_ties += 1
                assert ours >= ref
    assert scipy_dropped_ties > 0  # the tie case is exercised


def test_barnard_table_equals_the_single_outcome_test() -> None:
    for n1, n2 in [(12, 10), (20, 16)]:
        table = barnard_pvalue_table(n1, n2)
        single = np.array([[barnard_pvalue(a, n1, b, n2) for b in range(n2 + 1)] for a in range(n1 + 1)])
        assert np.all(table <= single + 1e-12)  # a grid supremum never exceeds the refined one
        assert np.all(table >= single - 1e-4)


@pytest.mark.parametrize("test", ["barnard", "fisher"])
def test_false_positive_rate_with_equal_rates_is_at_most_alpha(test: str) -> None:
    n = 50
    table = barnard_pvalue_table(n, n) if test == "barnard" else fisher_pvalue_table(n, n)
    for p in (0.3, 0.5, 0.8):
        exact = rejection_probability(table, p, p, ALPHA)
        assert exact <= ALPHA
        simulated = simulate_rejections(table, [p, p], ALPHA, N_SIM, seed=1).mean()
        assert simulated == pytest.approx(exact, abs=_mc_slack(exact))
        assert simulated <= ALPHA + _mc_slack(ALPHA)


def test_bonferroni_keeps_family_wise_rate_for_three_equal_policies() -> None:
    n, k = 60, 3
    table = fisher_pvalue_table(n, n)
    level = ALPHA / (k * (k - 1) // 2)
    fwer = simulate_rejections(table, [0.6] * k, level, N_SIM, seed=2).mean()
    assert fwer <= ALPHA + _mc_slack(ALPHA)
    uncorrected = simulate_rejections(table, [0.6] * k, ALPHA, N_SIM, seed=2).mean()
    assert uncorrected > fwer  # the correction is doing something


@pytest.mark.parametrize(("baseline", "test"), [(0.5, "fisher"), (0.6, "barnard")])
def test_power_at_planned_size_reaches_planned_power(baseline: float, test: str) -> None:
    plan = plan_sample_size(baseline, 0.2, power=0.8, alpha=ALPHA, test=test)  # type: ignore[arg-type]
    assert plan.power >= 0.8 and 40 <= plan.n <= 150
    assert plan.normal_n == pytest.approx(plan.n, rel=0.25)
    table = fisher_pvalue_table(plan.n, plan.n) if test == "fisher" else barnard_pvalue_table(plan.n, plan.n)
    simulated = simulate_rejections(table, [baseline, baseline + 0.2], ALPHA, N_SIM, seed=4).mean()
    assert simulated >= 0.8 - _mc_slack(0.8)
    assert simulated == pytest.approx(plan.power, abs=_mc_slack(plan.power))
    # one rollout fewer than planned (walked one at a time) misses the target
    smaller = fisher_pvalue_table(plan.n - 1, plan.n - 1) if test == "fisher" else None
    if smaller is not None:
        assert rejection_probability(smaller, baseline, baseline + 0.2, ALPHA) < 0.8


def test_plan_grows_with_comparisons_and_rejects_nonsense() -> None:
    one = plan_sample_size(0.6, 0.2, test="fisher")
    three = plan_sample_size(0.6, 0.2, test="fisher", n_comparisons=3)
    assert three.n > one.n
    with pytest.raises(ValueError):
        plan_sample_size(0.9, 0.2)


def test_pairwise_tests_bonferroni() -> None:
    tests = pairwise_tests(["a", "b", "c"], [45, 44, 20], [50, 50, 50], test="fisher")
    assert [(t.a, t.b) for t in tests] == [("a", "b"), ("a", "c"), ("b", "c")]
    for t in tests:
        assert t.p_adjusted == pytest.approx(min(1.0, 3 * t.p_value))
    assert [t.different for t in tests] == [False, True, True]


def test_compact_letters_hand_made_cases() -> None:
    names = ["A", "B", "C", "D"]
    means = [0.9, 0.85, 0.5, 0.45]
    two_groups = [("A", "C"), ("A", "D"), ("B", "C"), ("B", "D")]
    assert compact_letter_display(names, means, two_groups) == {"A": "a", "B": "a", "C": "b", "D": "b"}
    # only the extremes differ: a chain of overlapping groups
    assert compact_letter_display(["A", "B", "C"], [0.9, 0.7, 0.5], [("A", "C")]) == {
        "A": "a",
        "B": "ab",
        "C": "b",
    }
    assert compact_letter_display(names, means, []) == dict.fromkeys(names, "a")
    everything = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    assert compact_letter_display(names, means, everything) == {"A": "a", "B": "b", "C": "c", "D": "d"}
    # letters follow the means, not the order given
    assert compact_letter_display(["low", "high"], [0.1, 0.9], [("low", "high")]) == {"low": "b", "high": "a"}


def test_welch_matches_scipy_and_keeps_its_level() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.7, 0.1, 30), rng.normal(0.6, 0.3, 40)
    res = welch_test(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert res.t == pytest.approx(ref.statistic) and res.p_value == pytest.approx(ref.pvalue)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    satterthwaite = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    assert res.df == pytest.approx(satterthwaite, rel=1e-12)
    assert res.df < len(a) + len(b) - 2  # Welch-Satterthwaite, not the pooled df
    # a worked example: variances 1 and 4 over 10 values each give df = (0.1 + 0.4)² / ((0.01 + 0.16) / 9)
    x10 = np.arange(10.0) / np.arange(10.0).std(ddof=1)
    assert welch_test(x10, 2 * x10).df == pytest.approx(0.25 / (0.17 / 9), rel=1e-12)
    with pytest.warns(RuntimeWarning):  # scipy warns of the zero variance
        assert np.isnan(welch_test([0.1, 0.1, 0.1], [0.1, 0.1]).df)  # no df without variance
    # equal means, unequal variances and sizes: the rejection rate stays at α
    x = rng.normal(0.5, 0.1, (5000, 20))
    y = rng.normal(0.5, 0.3, (5000, 50))
    fpr = (sps.ttest_ind(x, y, axis=1, equal_var=False).pvalue <= ALPHA).mean()
    assert fpr <= ALPHA + _mc_slack(ALPHA, 5000)
