"""Statistics: intervals, exact tests vs scipy, error rates and power against simulation, letters, Welch."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from scorepolicy.evaluation.stats import (
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


def test_barnard_table_close_to_scipy_and_not_below_it() -> None:
    table = barnard_pvalue_table(12, 10)
    rng = np.random.default_rng(3)
    for s1, s2 in zip(rng.integers(0, 13, 25), rng.integers(0, 11, 25)):
        ref = min(1.0, exact_test(int(s1), 12, int(s2), 10, "barnard"))
        # mathematically tied statistics are counted in the tail here (scipy's float comparison may drop
        # some), and the supremum is taken over a grid: close, and never meaningfully below scipy.
        assert table[s1, s2] == pytest.approx(ref, abs=0.03)
        assert table[s1, s2] >= ref - 1e-3


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
    assert res.df < len(a) + len(b) - 2  # Welch-Satterthwaite, not the pooled df
    # equal means, unequal variances and sizes: the rejection rate stays at α
    x = rng.normal(0.5, 0.1, (5000, 20))
    y = rng.normal(0.5, 0.3, (5000, 50))
    fpr = (sps.ttest_ind(x, y, axis=1, equal_var=False).pvalue <= ALPHA).mean()
    assert fpr <= ALPHA + _mc_slack(ALPHA, 5000)
