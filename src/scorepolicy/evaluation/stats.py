"""Statistics for comparing policies from rollouts (TRI LBM style; METHODS.md §4).

- Success rates: Beta(1 + s, 1 + f) posterior (uniform prior) with an equal-tailed credible interval,
  Wilson and Clopper-Pearson intervals (scipy's `binomtest(...).proportion_ci`).
- Pairs of policies: an exact unconditional (Barnard) or conditional (Fisher, scipy's) test on the 2×2
  table; Barnard's is the project's own because scipy's `barnard_exact` drops outcomes whose statistic
  ties the observed one in exact arithmetic but not in floating point (scipy issue #18798);
  K policies: all K(K−1)/2 pairs at a Bonferroni-corrected level, summarised as a compact letter display.
- Continuous per-episode scores (coverage, task completion): Welch's t-test (scipy's `ttest_ind`).
- Planning: exact power of the test for given true rates and the smallest rollout count reaching a power.

The exact tests' p-values for *every* possible outcome at fixed sizes are computed at once
(`pvalue_table`), which makes exact power and simulated error rates cheap numpy sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
from scipy import optimize
from scipy import stats as sps
from scipy.special import gammaln

ExactTest = Literal["barnard", "fisher"]
EXACT_TESTS: tuple[str, ...] = ("barnard", "fisher")
_FISHER_TIE = 1 + 1e-7  # scipy.stats.fisher_exact's relative tolerance for "as or less likely"
_TIE = 1e-9  # relative tolerance for ties of the Wald statistic


def _check_counts(successes: int, n: int) -> None:
    if n <= 0:
        raise ValueError(f"need at least one trial, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n={n}], got {successes}")


def _check_level(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion `successes / n` at the given confidence level."""
    _check_counts(successes, n)
    _check_level(confidence)
    ci = sps.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    # At the boundaries the exact bound is 0 (or 1); avoid round-off leaving it a hair away.
    lo = 0.0 if successes == 0 else max(0.0, float(ci.low))
    hi = 1.0 if successes == n else min(1.0, float(ci.high))
    return lo, hi


def clopper_pearson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson ("exact") interval: coverage at least `confidence` for every true rate."""
    _check_counts(successes, n)
    _check_level(confidence)
    ci = sps.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="exact")
    lo = 0.0 if successes == 0 else float(ci.low)
    hi = 1.0 if successes == n else float(ci.high)
    return lo, hi


@dataclass(frozen=True)
class BetaPosterior:
    """Posterior Beta(a, b) of a success rate under a uniform prior: a = 1 + s, b = 1 + f."""

    a: float
    """1 + successes."""
    b: float
    """1 + failures."""

    @property
    def mean(self) -> float:
        """Posterior mean (s + 1) / (n + 2)."""
        return self.a / (self.a + self.b)

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Equal-tailed credible interval."""
        _check_level(confidence)
        tail = (1.0 - confidence) / 2.0
        lo, hi = sps.beta.ppf([tail, 1.0 - tail], self.a, self.b)
        return float(lo), float(hi)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n draws of the success rate (for violin plots)."""
        return rng.beta(self.a, self.b, size=n)

    def density(self, x: np.ndarray) -> np.ndarray:
        """Posterior density at x."""
        return np.asarray(sps.beta.pdf(x, self.a, self.b))


def success_posterior(successes: int, n: int) -> BetaPosterior:
    """Beta(1 + s, 1 + f) posterior of the success rate (uniform Beta(1, 1) prior)."""
    _check_counts(successes, n)
    return BetaPosterior(1.0 + successes, 1.0 + n - successes)


# ---------------------------------------------------------------------------------------------------------
# Exact tests on 2×2 tables


def exact_test(s1: int, n1: int, s2: int, n2: int, test: ExactTest = "barnard") -> float:
    """Two-sided p-value of H0: p1 = p2 from s1/n1 and s2/n2 successes (Barnard's or Fisher's exact test)."""
    _check_counts(s1, n1)
    _check_counts(s2, n2)
    if test == "barnard":
        return barnard_pvalue(s1, n1, s2, n2)
    if test == "fisher":
        table = [[s1, s2], [n1 - s1, n2 - s2]]
        return float(sps.fisher_exact(table, alternative="two-sided").pvalue)
    raise ValueError(f"unknown test {test!r}; valid tests: {', '.join(EXACT_TESTS)}")


def barnard_pvalue(s1: int, n1: int, s2: int, n2: int, grid: int = 1000) -> float:
    """Two-sided Barnard p-value (pooled Wald statistic) of one outcome: sup over the common rate π of
    P(|T| ≥ |T_obs|), mathematically tied statistics counted as ties.

    scipy.stats.barnard_exact defines the same test but compares the statistics in floating point, so an
    outcome tied with the observed one (e.g. its mirror image) can drop out of the tail and the p-value
    comes out too small (scipy issue #18798); elsewhere the two agree. The supremum is taken on a grid of
    `grid` rates in [0, ½] (the tail is symmetric in π ↔ 1 − π) and refined around the best grid rate.
    """
    _check_counts(s1, n1)
    _check_counts(s2, n2)
    stat = _wald_statistics(n1, n2)
    extreme = (stat >= stat[s1, s2] * (1.0 - _TIE)).astype(float)
    k1, k2 = np.arange(n1 + 1)[:, None], np.arange(n2 + 1)[:, None]

    def tails(pis: np.ndarray) -> np.ndarray:
        pmf1, pmf2 = sps.binom.pmf(k1, n1, pis[None, :]), sps.binom.pmf(k2, n2, pis[None, :])
        return np.asarray(((extreme @ pmf2) * pmf1).sum(axis=0))

    pis = np.linspace(0.0, 0.5, grid + 1)
    values = tails(pis)
    best = int(np.argmax(values))
    lo, hi = pis[max(best - 1, 0)], pis[min(best + 1, grid)]
    refined = optimize.minimize_scalar(
        lambda pi: -float(tails(np.array([pi]))[0]),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return float(min(1.0, max(values[best], -refined.fun)))


def _log_binom(n: int, k: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def fisher_pvalue_table(n1: int, n2: int) -> np.ndarray:
    """Two-sided Fisher p-values for every outcome: array (n1 + 1, n2 + 1) indexed by (s1, s2).

    Conditional on the total t = s1 + s2, s1 is hypergeometric; the p-value sums the probabilities of
    the outcomes with this total that are at most as likely (scipy's convention and tolerance).
    """
    s1 = np.arange(n1 + 1)
    table = np.ones((n1 + 1, n2 + 1))
    log_c1 = _log_binom(n1, s1)
    for t in range(n1 + n2 + 1):
        lo, hi = max(0, t - n2), min(n1, t)
        k = s1[lo : hi + 1]
        logp = log_c1[lo : hi + 1] + _log_binom(n2, t - k)
        p = np.exp(logp - logp.max())
        p /= p.sum()
        at_most = p[None, :] <= p[:, None] * _FISHER_TIE
        table[k, t - k] = np.minimum(1.0, (at_most * p[None, :]).sum(axis=1))
    return table


def _wald_statistics(n1: int, n2: int) -> np.ndarray:
    """Barnard's pooled Wald statistic |p̂1 − p̂2| / se for every outcome (n1 + 1, n2 + 1)."""
    s1, s2 = np.meshgrid(np.arange(n1 + 1), np.arange(n2 + 1), indexing="ij")
    pooled = (s1 + s2) / (n1 + n2)
    var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
    diff = np.abs(s1 / n1 - s2 / n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(var > 0, diff / np.sqrt(var), 0.0)
    return stat


def barnard_pvalue_table(n1: int, n2: int, grid: int = 400) -> np.ndarray:
    """Two-sided Barnard p-values (pooled Wald statistic) for every outcome, (n1 + 1, n2 + 1), at once.

    `barnard_pvalue` for every outcome (ties counted the same way), with the supremum over the common
    rate π taken on a grid of `grid` rates in (0, ½] without refinement: values can fall a hair below
    `barnard_pvalue`'s (by under 1e-4 at the sizes tested), never above it.
    """
    stat = _wald_statistics(n1, n2).ravel()
    order = np.argsort(-stat, kind="stable")
    sorted_stat = stat[order]
    # Index one past the last outcome whose statistic is >= each outcome's; mathematically equal
    # statistics can differ in the last bits, so ties are taken with a relative tolerance.
    end = np.searchsorted(-sorted_stat, -stat * (1.0 - _TIE), side="right")
    pis = np.linspace(0.5 / grid, 0.5, grid)
    s1, s2 = np.divmod(order, n2 + 1)  # the outcomes in decreasing order of the statistic
    pmf1 = sps.binom.pmf(np.arange(n1 + 1)[:, None], n1, pis[None, :])  # (n1 + 1, grid)
    pmf2 = sps.binom.pmf(np.arange(n2 + 1)[:, None], n2, pis[None, :])
    best = np.zeros(stat.shape)
    chunk = max(1, 2_000_000 // stat.size)
    for g in range(0, grid, chunk):
        mass = pmf1[s1, g : g + chunk] * pmf2[s2, g : g + chunk]  # (outcomes, chunk)
        tails = np.concatenate([np.zeros((1, mass.shape[1])), np.cumsum(mass, axis=0)])[end]
        np.maximum(best, tails.max(axis=1), out=best)
    return np.minimum(1.0, best).reshape(n1 + 1, n2 + 1)


def pvalue_table(n1: int, n2: int, test: ExactTest = "barnard") -> np.ndarray:
    """p-values of `test` for every outcome (s1, s2) at sizes n1, n2."""
    if test == "barnard":
        return barnard_pvalue_table(n1, n2)
    if test == "fisher":
        return fisher_pvalue_table(n1, n2)
    raise ValueError(f"unknown test {test!r}; valid tests: {', '.join(EXACT_TESTS)}")


def rejection_probability(table: np.ndarray, p1: float, p2: float, level: float) -> float:
    """Exact probability that the test with p-value `table` rejects at `level` when the true rates are
    p1 and p2 (the power, or the false-positive rate when p1 = p2)."""
    n1, n2 = table.shape[0] - 1, table.shape[1] - 1
    pmf = np.outer(sps.binom.pmf(np.arange(n1 + 1), n1, p1), sps.binom.pmf(np.arange(n2 + 1), n2, p2))
    return float(pmf[table <= level].sum())


def simulate_rejections(
    table: np.ndarray, rates: list[float] | np.ndarray, level: float, n_experiments: int, seed: int = 0
) -> np.ndarray:
    """Simulate experiments with K policies of true `rates` (each with table.shape[0] − 1 rollouts) and test
    all pairs at `level` (already corrected). Returns (n_experiments,) booleans: any pair rejected."""
    n = table.shape[0] - 1
    if table.shape != (n + 1, n + 1):
        raise ValueError("simulate_rejections needs equal group sizes (a square p-value table)")
    rng = np.random.default_rng(seed)
    s = rng.binomial(n, np.asarray(rates, dtype=float)[None, :], size=(n_experiments, len(rates)))
    any_reject = np.zeros(n_experiments, dtype=bool)
    for i in range(len(rates)):
        for j in range(i + 1, len(rates)):
            any_reject |= table[s[:, i], s[:, j]] <= level
    return any_reject


# ---------------------------------------------------------------------------------------------------------
# Many policies: Bonferroni-corrected pairwise tests and the compact letter display


@dataclass(frozen=True)
class PairTest:
    """The exact test of one pair of policies."""

    a: str
    """First policy."""
    b: str
    """Second policy."""
    p_value: float
    """Unadjusted two-sided p-value."""
    p_adjusted: float
    """Bonferroni-adjusted p-value min(1, m·p) for m pairs."""
    different: bool
    """Whether p_adjusted ≤ α."""


def pairwise_tests(
    names: list[str],
    successes: list[int],
    trials: list[int],
    *,
    test: ExactTest = "barnard",
    alpha: float = 0.05,
) -> list[PairTest]:
    """All K(K−1)/2 pairwise exact tests, Bonferroni-corrected to family-wise level α."""
    if not (len(names) == len(successes) == len(trials)):
        raise ValueError("names, successes and trials need one entry per policy")
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must be unique, got {names}")
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    m = max(1, len(pairs))
    out = []
    for i, j in pairs:
        p = exact_test(successes[i], trials[i], successes[j], trials[j], test)
        adjusted = min(1.0, m * p)
        out.append(PairTest(names[i], names[j], p, adjusted, adjusted <= alpha))
    return out


def compact_letter_display(
    names: list[str], means: list[float], different: set[frozenset[str]] | list[tuple[str, str]]
) -> dict[str, str]:
    """Letters per policy (Piepho 2004, insert-absorb): policies sharing a letter are not significantly
    different. 'a' goes to the group holding the highest mean, letters within a policy are sorted."""
    if len(names) != len(means):
        raise ValueError("names and means need one entry per policy")
    diff = {frozenset(p) for p in different}
    columns: list[frozenset[str]] = [frozenset(names)]
    for pair in sorted(diff, key=lambda p: sorted(p)):
        a, b = sorted(pair)
        split: list[frozenset[str]] = []
        for col in columns:
            if a in col and b in col:
                split += [col - {a}, col - {b}]
            else:
                split.append(col)
        # absorb: drop duplicates and columns contained in another column
        unique = list(dict.fromkeys(split))
        columns = [c for c in unique if not any(c < other for other in unique)]
    rank = {n: i for i, n in enumerate(sorted(names, key=lambda n: -means[names.index(n)]))}
    columns.sort(key=lambda c: sorted(rank[n] for n in c))
    letters = _letters(len(columns))
    return {n: "".join(letters[k] for k, col in enumerate(columns) if n in col) for n in names}


def _letters(k: int) -> list[str]:
    base = "abcdefghijklmnopqrstuvwxyz"
    return [base[i] if i < 26 else f"{base[i // 26 - 1]}{base[i % 26]}" for i in range(k)]


# ---------------------------------------------------------------------------------------------------------
# Continuous scores and planning


@dataclass(frozen=True)
class WelchResult:
    """Welch's unequal-variance t-test of two samples of a continuous score."""

    mean_a: float
    """Mean of the first sample."""
    mean_b: float
    """Mean of the second sample."""
    t: float
    """t statistic."""
    df: float
    """Welch-Satterthwaite degrees of freedom."""
    p_value: float
    """Two-sided p-value."""


def welch_test(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> WelchResult:
    """Welch's t-test (scipy.stats.ttest_ind with equal_var=False) of two samples."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("Welch's t-test needs at least two values per sample")
    res = sps.ttest_ind(x, y, equal_var=False)
    p = float(res.pvalue) if np.isfinite(res.pvalue) else 1.0
    # Two constant samples have no Welch-Satterthwaite df (scipy reports one anyway).
    df = float(res.df) if np.ptp(x) > 0 or np.ptp(y) > 0 else math.nan
    return WelchResult(float(x.mean()), float(y.mean()), float(res.statistic), df, p)


def normal_sample_size(p1: float, p2: float, alpha: float, power: float) -> int:
    """Rollouts per policy for a two-sided two-proportion z-test (pooled null variance)."""
    if p1 == p2:
        raise ValueError("the two rates must differ to plan a sample size")
    z_a, z_b = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    pbar = (p1 + p2) / 2
    num = z_a * math.sqrt(2 * pbar * (1 - pbar)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil((num / (p1 - p2)) ** 2)


@dataclass(frozen=True)
class Plan:
    """Rollouts per policy needed to detect a difference in success rate."""

    baseline: float
    """Success rate of the reference policy."""
    effect: float
    """Difference in success rate to detect (the other policy's rate is baseline + effect)."""
    alpha: float
    """Family-wise significance level."""
    n_comparisons: int
    """Pairwise comparisons the level is split over (Bonferroni)."""
    target_power: float
    """Power asked for."""
    test: str
    """Exact test the power is computed for."""
    normal_n: int
    """Normal-approximation rollouts per policy."""
    n: int
    """Smallest rollouts per policy whose exact power reaches the target (the planned size)."""
    power: float
    """Exact power at n."""


def plan_sample_size(
    baseline: float,
    effect: float,
    *,
    power: float = 0.8,
    alpha: float = 0.05,
    n_comparisons: int = 1,
    test: ExactTest = "fisher",
    max_n: int = 2000,
) -> Plan:
    """Smallest rollouts per policy at which the exact `test` at level α/n_comparisons rejects with
    probability ≥ `power` when the true rates are baseline and baseline + effect. Starts from the
    normal approximation and walks the exact power (computed, not simulated)."""
    p2 = baseline + effect
    if not (0.0 <= baseline <= 1.0 and 0.0 <= p2 <= 1.0) or effect == 0:
        raise ValueError(f"need 0 ≤ baseline, baseline + effect ≤ 1 and effect ≠ 0; got {baseline}, {effect}")
    if not 0.0 < power < 1.0 or not 0.0 < alpha < 1.0 or n_comparisons < 1:
        raise ValueError("power and alpha must lie in (0, 1), n_comparisons ≥ 1")
    level = alpha / n_comparisons
    guess = normal_sample_size(baseline, p2, level, power)
    n = max(2, int(guess * 0.9))
    step = max(1, guess // 50)
    while n <= max_n:
        got = rejection_probability(pvalue_table(n, n, test), baseline, p2, level)
        if got >= power:
            if step == 1:
                return Plan(baseline, effect, alpha, n_comparisons, power, test, guess, n, got)
            n, step = max(2, n - step), 1  # refine: walk one at a time from the last miss
            continue
        n += step
    raise ValueError(f"more than {max_n} rollouts per policy would be needed; plan a larger effect")
