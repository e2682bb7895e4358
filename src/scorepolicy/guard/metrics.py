"""Failure-prediction metrics of a run-time monitor, as FIPER defines them, each with a 95% interval.

Inputs are per-episode records: `success` (the episode succeeded), `first_alarm_step` (0-based env step
of the episode's first alarm, None without one) and `length` (env steps taken). A failure is a
*positive*: an alarm on a failure is a true positive, an alarm on a success a false one.

- TPR: failures with an alarm / failures. TNR: successes without one / successes.
- accuracy: FIPER's balanced accuracy ½(TPR + TNR). `raw_accuracy`: correct episodes / all episodes.
- detection time DT of a caught failure: first_alarm_step / (length − 1), 0 at the first step and 1 at
  the last (FIPER divides the first alarm's index by T − 1); `mean_detection_time` averages it over the
  caught failures.
- detected before the end: caught failures whose first alarm precedes their last step (DT < 1).
- TWA (time-weighted accuracy): ½[Σ_caught failures (1 − DT_i) / N_failures + TNR]: late detections earn
  less credit.

Intervals: Wilson for the rates (TPR, TNR, raw accuracy, detected before the end); for the balanced
accuracy the mean of the TPR and TNR Wilson bounds each taken at level 1 − α/2 (both hold together with
probability ≥ 1 − α by the union bound, so the interval of their mean has coverage ≥ 1 − α); for the
mean detection time and TWA a seeded percentile bootstrap (failures and successes resampled
separately, so their counts stay fixed). A metric whose episodes are absent (no failures for TPR) is None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.stats import wilson_interval

BOOTSTRAP_SAMPLES = 4000
"""Resamples of the bootstrap intervals (seeded: the same records give the same interval)."""


@dataclass(frozen=True)
class AlarmRecord:
    """One monitored episode: its outcome, the step of its first alarm (None: none) and its length."""

    success: bool
    """The episode succeeded (a negative for the failure predictor)."""
    first_alarm_step: int | None
    """0-based env step of the first alarm, in [0, length); None when the monitor never alarmed."""
    length: int
    """Env steps the episode took (≥ 1)."""

    @property
    def alarmed(self) -> bool:
        """Whether the monitor alarmed during the episode."""
        return self.first_alarm_step is not None

    @property
    def detection_time(self) -> float | None:
        """first_alarm_step / (length − 1) (0 for one-step episodes); None without an alarm."""
        if self.first_alarm_step is None:
            return None
        return self.first_alarm_step / (self.length - 1) if self.length > 1 else 0.0


@dataclass(frozen=True)
class Estimate:
    """A metric's value with its interval; `k`/`n` are the counts behind a rate (None for other metrics)."""

    value: float | None
    """The metric (None when the episodes it needs are absent)."""
    ci: tuple[float, float] | None
    """Its interval at the requested confidence."""
    k: int | None = None
    """Numerator of a rate."""
    n: int | None = None
    """Episodes the metric is taken over."""


def _record(item: AlarmRecord | Mapping[str, Any], index: int) -> AlarmRecord:
    if isinstance(item, AlarmRecord):
        record = item
    else:
        missing = [k for k in ("success", "first_alarm_step", "length") if k not in item]
        if missing:
            raise ScorePolicyError(
                f"alarm record {index}: missing {', '.join(missing)} (first_alarm_step is None without an alarm)"
            )
        step = item["first_alarm_step"]
        record = AlarmRecord(
            bool(float(item["success"]) > 0.5), None if step is None else int(step), int(item["length"])
        )
    if record.length < 1:
        raise ScorePolicyError(f"alarm record {index}: length must be ≥ 1, got {record.length}")
    step = record.first_alarm_step
    if step is not None and not 0 <= step < record.length:
        raise ScorePolicyError(
            f"alarm record {index}: first_alarm_step must lie in [0, length={record.length}), got {step}"
        )
    return record


def alarm_records(items: Iterable[AlarmRecord | Mapping[str, Any]]) -> list[AlarmRecord]:
    """AlarmRecords from records or evaluation-JSON episodes (dicts; those with an `error` are skipped)."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, Mapping) and "error" in item:
            continue
        out.append(_record(item, i))
    return out


def _rate(k: int, n: int, confidence: float) -> Estimate:
    if n == 0:
        return Estimate(None, None, k, n)
    return Estimate(k / n, wilson_interval(k, n, confidence), k, n)


def true_positive_rate(
    records: Iterable[AlarmRecord | Mapping[str, Any]], confidence: float = 0.95
) -> Estimate:
    """TPR: the fraction of failures with an alarm, with its Wilson interval."""
    failures = [r for r in alarm_records(records) if not r.success]
    return _rate(sum(r.alarmed for r in failures), len(failures), confidence)


def true_negative_rate(
    records: Iterable[AlarmRecord | Mapping[str, Any]], confidence: float = 0.95
) -> Estimate:
    """TNR: the fraction of successes without an alarm, with its Wilson interval."""
    successes = [r for r in alarm_records(records) if r.success]
    return _rate(sum(not r.alarmed for r in successes), len(successes), confidence)


def balanced_accuracy(
    records: Iterable[AlarmRecord | Mapping[str, Any]], confidence: float = 0.95
) -> Estimate:
    """FIPER's accuracy ½(TPR + TNR), with the union-bound interval of the module doc."""
    recs = alarm_records(records)
    tpr, tnr = true_positive_rate(recs), true_negative_rate(recs)
    if tpr.value is None or tnr.value is None:
        return Estimate(None, None, None, len(recs))
    each = 1.0 - (1.0 - confidence) / 2
    a, b = true_positive_rate(recs, each).ci, true_negative_rate(recs, each).ci
    assert a is not None and b is not None
    (a_lo, a_hi), (b_lo, b_hi) = a, b
    return Estimate((tpr.value + tnr.value) / 2, ((a_lo + b_lo) / 2, (a_hi + b_hi) / 2), None, len(recs))


def raw_accuracy(records: Iterable[AlarmRecord | Mapping[str, Any]], confidence: float = 0.95) -> Estimate:
    """Correctly predicted episodes (alarm iff failure) / all episodes, with its Wilson interval."""
    recs = alarm_records(records)
    return _rate(sum(r.alarmed != r.success for r in recs), len(recs), confidence)


def detection_times(records: Iterable[AlarmRecord | Mapping[str, Any]]) -> np.ndarray:
    """DT of every caught failure (failures with an alarm), in record order."""
    return np.array(
        [r.detection_time for r in alarm_records(records) if not r.success and r.alarmed], dtype=np.float64
    )


def detected_before_end(
    records: Iterable[AlarmRecord | Mapping[str, Any]], confidence: float = 0.95
) -> Estimate:
    """The fraction of caught failures whose first alarm precedes their last step, with its Wilson interval."""
    dts = detection_times(records)
    return _rate(int(np.sum(dts < 1.0)), len(dts), confidence)


def _twa(fail_credit: np.ndarray, success_quiet: np.ndarray) -> float:
    """½[mean over failures of (1 − DT, 0 if missed) + mean over successes of (no alarm)]."""
    return 0.5 * (float(fail_credit.mean()) + float(success_quiet.mean()))


def _bootstrap(statistic: Any, groups: list[np.ndarray], confidence: float, seed: int) -> tuple[float, float]:
    """Percentile interval of statistic(*groups) with every group resampled with replacement on its own."""
    rng = np.random.default_rng(seed)
    values = np.empty(BOOTSTRAP_SAMPLES)
    for b in range(BOOTSTRAP_SAMPLES):
        values[b] = statistic(*(g[rng.integers(0, len(g), len(g))] for g in groups))
    alpha = 1.0 - confidence
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def mean_detection_time(
    records: Iterable[AlarmRecord | Mapping[str, Any]], confidence: float = 0.95, seed: int = 0
) -> Estimate:
    """The mean DT over caught failures, with a seeded bootstrap interval (None without caught failures)."""
    dts = detection_times(records)
    if len(dts) == 0:
        return Estimate(None, None, None, 0)
    ci = _bootstrap(lambda d: float(d.mean()), [dts], confidence, seed)
    return Estimate(float(dts.mean()), ci, None, len(dts))


def time_weighted_accuracy(
    records: Iterable[AlarmRecord | Mapping[str, Any]], confidence: float = 0.95, seed: int = 0
) -> Estimate:
    """FIPER's TWA with a seeded stratified bootstrap interval (None without failures or successes)."""
    recs = alarm_records(records)
    credit = np.array(
        [1.0 - r.detection_time if r.detection_time is not None else 0.0 for r in recs if not r.success]
    )
    quiet = np.array([0.0 if r.alarmed else 1.0 for r in recs if r.success])
    if len(credit) == 0 or len(quiet) == 0:
        return Estimate(None, None, None, len(recs))
    ci = _bootstrap(_twa, [credit, quiet], confidence, seed)
    return Estimate(_twa(credit, quiet), ci, None, len(recs))


def detection_metrics(
    records: Iterable[AlarmRecord | Mapping[str, Any]], confidence: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Every metric of the module as JSON: `<name>` and `<name>_ci` (None where undefined), plus counts."""
    recs = alarm_records(records)
    n_fail = sum(not r.success for r in recs)
    out: dict[str, Any] = {"n_episodes": len(recs), "n_failures": n_fail, "n_successes": len(recs) - n_fail}
    metrics = {
        "tpr": true_positive_rate(recs, confidence),
        "tnr": true_negative_rate(recs, confidence),
        "accuracy": balanced_accuracy(recs, confidence),
        "raw_accuracy": raw_accuracy(recs, confidence),
        "mean_detection_time": mean_detection_time(recs, confidence, seed),
        "detected_before_end": detected_before_end(recs, confidence),
        "twa": time_weighted_accuracy(recs, confidence, seed),
    }
    for name, estimate in metrics.items():
        out[name] = estimate.value
        out[f"{name}_ci"] = list(estimate.ci) if estimate.ci is not None else None
    out["n_caught_failures"] = metrics["detected_before_end"].n
    out["confidence"] = confidence
    return out
