"""FIPER's failure-prediction metrics on hand-built episode records with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.stats import wilson_interval
from scorepolicy.guard.metrics import (
    AlarmRecord,
    alarm_records,
    balanced_accuracy,
    detected_before_end,
    detection_metrics,
    detection_times,
    mean_detection_time,
    raw_accuracy,
    time_weighted_accuracy,
    true_negative_rate,
    true_positive_rate,
)

F, S = False, True
RECORDS = [
    AlarmRecord(F, 0, 10),  # caught at the first step: DT 0
    AlarmRecord(F, 9, 10),  # caught at the last step: DT 1, not before the end
    AlarmRecord(F, None, 10),  # missed
    AlarmRecord(F, 2, 5),  # DT 0.5
    AlarmRecord(S, None, 7),
    AlarmRecord(S, None, 3),
    AlarmRecord(S, 1, 3),  # false alarm
]


def test_known_answers() -> None:
    m = detection_metrics(RECORDS)
    assert (m["n_episodes"], m["n_failures"], m["n_successes"], m["n_caught_failures"]) == (7, 4, 3, 3)
    assert m["tpr"] == pytest.approx(3 / 4)
    assert m["tnr"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert m["raw_accuracy"] == pytest.approx(5 / 7)
    np.testing.assert_allclose(detection_times(RECORDS), [0.0, 1.0, 0.5])
    assert m["mean_detection_time"] == pytest.approx(0.5)
    assert m["detected_before_end"] == pytest.approx(2 / 3)
    # TWA = ½[((1 − 0) + (1 − 1) + 0 + (1 − 0.5)) / 4 + 2/3]
    assert m["twa"] == pytest.approx(0.5 * (1.5 / 4 + 2 / 3))


def test_rates_carry_wilson_intervals_and_counts() -> None:
    tpr, tnr = true_positive_rate(RECORDS), true_negative_rate(RECORDS)
    assert (tpr.k, tpr.n, tnr.k, tnr.n) == (3, 4, 2, 3)
    assert tpr.ci == wilson_interval(3, 4) and tnr.ci == wilson_interval(2, 3)
    assert raw_accuracy(RECORDS).ci == wilson_interval(5, 7)
    assert detected_before_end(RECORDS).ci == wilson_interval(2, 3)
    assert true_positive_rate(RECORDS, 0.8).ci == wilson_interval(3, 4, 0.8)


def test_balanced_accuracy_interval_is_the_union_bound() -> None:
    acc = balanced_accuracy(RECORDS)
    (a_lo, a_hi), (b_lo, b_hi) = wilson_interval(3, 4, 0.975), wilson_interval(2, 3, 0.975)
    assert acc.ci == pytest.approx(((a_lo + b_lo) / 2, (a_hi + b_hi) / 2))
    assert acc.ci is not None and acc.ci[0] <= acc.value <= acc.ci[1]  # type: ignore[operator]


def test_balanced_accuracy_interval_covers_at_least_95_percent() -> None:
    """Simulation: TPR 0.8 on 30 failures, TNR 0.6 on 20 successes, 400 draws."""
    rng = np.random.default_rng(0)
    truth, hits = (0.8 + 0.6) / 2, 0
    for _ in range(400):
        tp, tn = int(rng.binomial(30, 0.8)), int(rng.binomial(20, 0.6))
        records = [AlarmRecord(F, 0 if i < tp else None, 5) for i in range(30)]
        records += [AlarmRecord(S, None if i < tn else 0, 5) for i in range(20)]
        lo, hi = balanced_accuracy(records).ci  # type: ignore[misc]
        hits += lo <= truth <= hi
    assert hits / 400 >= 0.95


def test_perfect_and_useless_monitors() -> None:
    perfect = [AlarmRecord(F, 0, 10)] * 5 + [AlarmRecord(S, None, 10)] * 5
    m = detection_metrics(perfect)
    assert m["tpr"] == m["tnr"] == m["accuracy"] == m["raw_accuracy"] == m["twa"] == 1.0
    assert m["mean_detection_time"] == 0.0 and m["twa_ci"] == [1.0, 1.0]
    always = [AlarmRecord(F, 9, 10)] * 5 + [AlarmRecord(S, 0, 10)] * 5  # alarms on everything, late
    m = detection_metrics(always)
    assert m["tpr"] == 1.0 and m["tnr"] == 0.0 and m["accuracy"] == 0.5
    assert m["twa"] == 0.0 and m["detected_before_end"] == 0.0  # caught only at the last step: no credit


def test_bootstrap_intervals_are_seeded_and_contain_the_estimate() -> None:
    rng = np.random.default_rng(1)
    records = [
        AlarmRecord(bool(rng.random() < 0.4), int(rng.integers(0, 50)) if rng.random() < 0.6 else None, 50)
        for _ in range(60)
    ]
    twa, again = time_weighted_accuracy(records), time_weighted_accuracy(records)
    assert twa.ci == again.ci and twa.ci is not None and twa.value is not None
    assert 0.0 <= twa.ci[0] < twa.value < twa.ci[1] <= 1.0
    dt = mean_detection_time(records)
    assert dt.ci is not None and dt.value is not None and dt.ci[0] < dt.value < dt.ci[1]
    assert time_weighted_accuracy(records, seed=5).ci != twa.ci


def test_undefined_metrics_are_none() -> None:
    only_successes = [AlarmRecord(S, None, 4), AlarmRecord(S, 2, 4)]
    m = detection_metrics(only_successes)
    assert m["tpr"] is None and m["tpr_ci"] is None and m["accuracy"] is None and m["twa"] is None
    assert m["tnr"] == 0.5 and m["mean_detection_time"] is None and m["detected_before_end"] is None
    assert detection_metrics([])["n_episodes"] == 0


def test_evaluation_json_episodes_are_accepted() -> None:
    episodes = [
        {"seed": 1, "success": 0.0, "length": 300, "alarm": True, "first_alarm_step": 120},
        {"seed": 2, "success": 1.0, "length": 80, "alarm": False, "first_alarm_step": None},
        {"seed": 3, "error": "boom", "success": 0.0, "length": 0},  # errored episodes are skipped
    ]
    recs = alarm_records(episodes)
    assert recs == [AlarmRecord(F, 120, 300), AlarmRecord(S, None, 80)]
    assert detection_metrics(episodes)["mean_detection_time"] == pytest.approx(120 / 299)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"success": 1.0, "length": 5}, "missing first_alarm_step"),
        (
            {"success": 0.0, "first_alarm_step": 5, "length": 5},
            r"first_alarm_step must lie in \[0, length=5\)",
        ),
        ({"success": 0.0, "first_alarm_step": -1, "length": 5}, "first_alarm_step"),
        ({"success": 0.0, "first_alarm_step": None, "length": 0}, "length must be ≥ 1"),
    ],
)
def test_bad_records_are_one_line_errors(record: dict[str, object], message: str) -> None:
    with pytest.raises(ScorePolicyError, match=message) as info:
        alarm_records([record])
    assert "\n" not in str(info.value) and "alarm record 0" in str(info.value)
