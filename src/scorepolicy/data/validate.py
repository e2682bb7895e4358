"""Dataset validation: one pass that reports every problem it finds, one line each.

Problems name the file, episode and field: missing files or columns, ragged or mismatched shapes,
dtypes that differ from the declared ones, NaN/inf, non-monotonic timestamps or frame indices,
episodes shorter than the policy's horizon, statistics that disagree with the data. Notes (such as
video files that are absent) are reported but do not make a dataset invalid.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from scorepolicy.data.formats import DataFormat, OpenedDataset, open_dataset
from scorepolicy.errors import ScorePolicyError

Severity = Literal["error", "note"]


@dataclass(frozen=True)
class Problem:
    """One finding of the validator."""

    file: str
    """File (or directory) at fault; empty when the message already names it."""
    message: str
    """What is wrong and, where it helps, how to fix it."""
    episode: int | None = None
    """Episode index, when the problem belongs to one episode."""
    field: str | None = None
    """Feature / column / key, when the problem belongs to one."""
    severity: Severity = "error"
    """'error' makes the dataset invalid; 'note' is information (e.g. absent videos)."""

    def __str__(self) -> str:
        parts = [p for p in (self.file,) if p]
        if self.episode is not None:
            parts.append(f"episode {self.episode}")
        if self.field:
            parts.append(f"'{self.field}'")
        prefix = "note: " if self.severity == "note" else ""
        return prefix + ": ".join([*parts, self.message])


@dataclass
class ValidationReport:
    """Every problem found in one dataset."""

    path: str
    """The dataset validated."""
    format: str
    """Its format (detected or forced)."""
    problems: list[Problem] = field(default_factory=list)
    """Errors and notes, in the order found."""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        """Every problem, one line each (errors first, then notes)."""
        notes = [p for p in self.problems if p.severity == "note"]
        return [str(p) for p in self.errors + notes]

    def summary(self) -> str:
        n = len(self.errors)
        verdict = "valid" if n == 0 else f"{n} problem{'s' if n != 1 else ''} found"
        return f"{self.path} ({self.format}): {verdict}"


class DataValidationError(ScorePolicyError):
    """Data refused by validation; the message is the summary followed by one line per problem."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        lines = [p for p in report.lines() if not p.startswith("note: ")]
        if len(lines) == 1:  # a single problem stays a one-line error
            super().__init__(f"{lines[0]} (data refused before training)")
            return
        shown = lines[:50] + ([f"... and {len(lines) - 50} more"] if len(lines) > 50 else [])
        body = "\n".join(f"  {line}" for line in shown)
        super().__init__(
            f"{report.summary()}; fix the data (or drop those episodes) before training:\n{body}"
        )


def check_episode(
    file: str, episode: int, arrays: dict[str, np.ndarray], *, fps: float | None, horizon: int | None
) -> Iterator[Problem]:
    """Per-episode checks shared by every format: NaN/inf, length, timestamps and frame indices."""
    n = min((len(a) for a in arrays.values()), default=0)
    if horizon is not None and n < horizon:
        yield Problem(
            file, f"{n} frames, shorter than the policy's horizon {horizon}; drop or extend it", episode
        )
    for key, arr in arrays.items():
        if arr.dtype.kind == "f" and len(arr):
            bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
            if bad.any():
                yield Problem(
                    file,
                    f"NaN/inf in {int(bad.sum())} frame(s), first at frame {int(np.argmax(bad))}",
                    episode,
                    key,
                )
    if "frame_index" in arrays and not np.array_equal(arrays["frame_index"], np.arange(n)):
        first = int(np.argmax(arrays["frame_index"][:n] != np.arange(n)))
        yield Problem(
            file,
            f"frame indices are not 0..{n - 1} in order (first off at row {first})",
            episode,
            "frame_index",
        )
    if "timestamp" in arrays and n > 1:
        yield from _check_timestamps(file, episode, np.asarray(arrays["timestamp"], np.float64), fps)


def _check_timestamps(file: str, episode: int, ts: np.ndarray, fps: float | None) -> Iterator[Problem]:
    steps = np.diff(ts)
    if not np.all(np.isfinite(ts)):
        return  # reported by the NaN check
    if np.any(steps <= 0):
        row = int(np.argmax(steps <= 0)) + 1
        yield Problem(
            file,
            f"timestamps are not strictly increasing (row {row}: {ts[row - 1]:.4f} -> {ts[row]:.4f})",
            episode,
            "timestamp",
        )
    elif fps is not None and np.any(np.abs(steps - 1.0 / fps) > 0.5 / fps):
        row = int(np.argmax(np.abs(steps - 1.0 / fps) > 0.5 / fps)) + 1
        yield Problem(
            file,
            f"frame spacing {steps[row - 1]:.4f} s at row {row} differs from 1/fps = {1 / fps:.4f} s",
            episode,
            "timestamp",
            severity="note",
        )


def compare_stats(
    file: str, episode: int | None, key: str, recorded: dict[str, np.ndarray], values: np.ndarray
) -> Iterator[Problem]:
    """Recorded min/max/mean/std/count of a feature against the data (quantiles are estimates: skipped)."""
    flat = (
        values.reshape(len(values), -1).astype(np.float64)
        if values.ndim > 1
        else values[:, None].astype(np.float64)
    )
    if not len(flat) or not np.all(np.isfinite(flat)):
        return
    actual = {
        "min": flat.min(0),
        "max": flat.max(0),
        "mean": flat.mean(0),
        "std": flat.std(0),
        "count": np.array([len(flat)], np.float64),
    }
    scale = np.maximum(np.abs(flat).max(0), 1e-6)
    for name, value in actual.items():
        if name not in recorded:
            continue
        try:
            rec = np.asarray(recorded[name], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            yield Problem(file, f"stats '{name}' is not numeric", episode, key)
            continue
        if rec.shape != value.shape:
            yield Problem(
                file,
                f"stats '{name}' has {rec.size} values but the data has {value.size} dimensions",
                episode,
                key,
            )
            continue
        tol = 0.5 if name == "count" else 1e-4 * (scale if name != "std" else scale * 10)
        off = np.abs(rec - value) > tol
        if off.any():
            i = int(np.argmax(off))
            yield Problem(
                file,
                f"stats '{name}'[{i}] = {rec[i]:.6g} but the data gives {value[i]:.6g}; recompute the statistics",
                episode,
                key,
            )


def validate_dataset(
    path: str | Path, format: DataFormat | None = None, *, horizon: int | None = None
) -> ValidationReport:
    """Check a dataset in one pass and report every problem found (never raises for bad data)."""
    try:
        dataset = open_dataset(path, format)
    except ScorePolicyError as exc:
        return ValidationReport(str(path), format or "unknown", [Problem("", str(exc))])
    return validate_opened(dataset, horizon)


def validate_opened(dataset: OpenedDataset, horizon: int | None) -> ValidationReport:
    """Every problem of an opened dataset, found in one pass (never raises for bad data)."""
    report = ValidationReport(str(dataset.path), dataset.format)
    from scorepolicy.data import validate_formats as vf

    checks = {"lerobot": vf.validate_lerobot, "zarr": vf.validate_zarr, "robomimic": vf.validate_robomimic}
    try:
        report.problems.extend(checks[dataset.format](dataset.path, horizon))
    except ScorePolicyError as exc:
        report.problems.append(Problem("", str(exc)))
    return report
