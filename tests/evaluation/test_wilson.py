"""Wilson score interval: reference values, edge cases, monotonicity."""

from __future__ import annotations

import pytest

from scorepolicy.evaluation.stats import wilson_interval

# Derived by hand from the closed form with z = 1.9599640 (95%, z² = 3.8414588):
# centre = (p + z²/2n) / (1 + z²/n), half-width = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n).
# For n = 10, z²/n = 0.384146.
REFERENCE = [
    (0, 10, 0.0, 0.277533),  # hi = (z²/n) / (1 + z²/n)
    (5, 10, 0.236593, 0.763407),
    (8, 10, 0.490162, 0.943318),
    (10, 10, 0.722467, 1.0),
]


@pytest.mark.parametrize(("k", "n", "lo", "hi"), REFERENCE)
def test_reference_values(k: int, n: int, lo: float, hi: float) -> None:
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-6)


def test_exact_bounds_at_zero_and_n() -> None:
    for n in (1, 7, 100, 1000):
        assert wilson_interval(0, n)[0] == 0.0
        assert wilson_interval(n, n)[1] == 1.0


def test_symmetry_and_contains_point_estimate() -> None:
    for n in (1, 5, 50):
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            mirror_lo, mirror_hi = wilson_interval(n - k, n)
            assert lo == pytest.approx(1.0 - mirror_hi, abs=1e-12)
            assert hi == pytest.approx(1.0 - mirror_lo, abs=1e-12)
            assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wider_at_higher_confidence() -> None:
    for k, n in [(0, 10), (3, 10), (37, 50), (50, 50)]:
        widths = [hi - lo for lo, hi in (wilson_interval(k, n, c) for c in (0.5, 0.8, 0.9, 0.95, 0.99))]
        assert widths == sorted(widths)
        assert widths[0] < widths[-1]


def test_narrower_with_more_trials() -> None:
    w10 = wilson_interval(5, 10)
    w1000 = wilson_interval(500, 1000)
    assert (w1000[1] - w1000[0]) < (w10[1] - w10[0])


@pytest.mark.parametrize(
    ("k", "n", "conf"), [(0, 0, 0.95), (3, 2, 0.95), (-1, 5, 0.95), (1, 5, 1.0), (1, 5, 0.0)]
)
def test_invalid_arguments_raise(k: int, n: int, conf: float) -> None:
    with pytest.raises(ValueError):
        wilson_interval(k, n, conf)
