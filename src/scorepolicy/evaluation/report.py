"""Compare evaluation results: a table with intervals and letters, pairwise tests, plots, a Markdown report.

Input: result JSONs written by `scorepolicy eval --json` (or `evaluate`). Results are grouped by task;
within a task every result is one "policy" (a run at one sampling setting). Success rates get the
Beta(1 + s, 1 + f) posterior with its 95% credible interval and the Wilson interval; all pairs are
tested with an exact test at a Bonferroni-corrected level and summarised as compact letters; a
continuous per-episode score (Push-T coverage) is compared with Welch's t-test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.stats import (
    ExactTest,
    compact_letter_display,
    pairwise_tests,
    success_posterior,
    welch_test,
    wilson_interval,
)
from scorepolicy.files import atomic_write_bytes, atomic_write_json, read_json
from scorepolicy.provenance import provenance

CONTINUOUS_KEYS = ("max_coverage", "task_completion", "score")
"""Per-episode continuous scores compared with Welch's t-test (the first one the episodes carry)."""


@dataclass
class Entry:
    """One evaluation result in a comparison."""

    name: str
    """Label of the policy in the report (the JSON's file name without extension unless given)."""
    path: Path
    """The result JSON."""
    result: dict[str, Any]
    """Its contents."""

    @property
    def n(self) -> int:
        """Episodes."""
        return int(self.result["n_episodes"])

    @property
    def successes(self) -> int:
        """Successful episodes (errored ones count as failures)."""
        return round(float(self.result["success_rate"]) * self.n)

    @property
    def episodes(self) -> list[dict[str, Any]]:
        """Per-episode records (empty if the JSON has none)."""
        return list(self.result.get("episodes") or [])

    def continuous(self, key: str) -> np.ndarray:
        """The per-episode values of a continuous score (error-free episodes)."""
        return np.array([float(e[key]) for e in self.episodes if key in e and "error" not in e])


def load_entries(paths: list[Path], names: list[str] | None = None) -> list[Entry]:
    """Read result JSONs (one-line errors for missing files or fields); names default to file stems."""
    if names and len(names) != len(paths):
        raise ScorePolicyError(f"--names: got {len(names)} names for {len(paths)} result files")
    entries = []
    for i, path in enumerate(paths):
        result = read_json(path)
        for key in ("task", "n_episodes", "success_rate"):
            if not isinstance(result, dict) or key not in result:
                raise ScorePolicyError(
                    f"{path}: field '{key}' missing; is this a `scorepolicy eval --json` result?"
                )
        entries.append(Entry(names[i] if names else path.stem, path, result))
    if len({e.name for e in entries}) != len(entries):
        raise ScorePolicyError("two results have the same name; pass distinct --names")
    return entries


def _continuous_key(entries: list[Entry]) -> str | None:
    for key in CONTINUOUS_KEYS:
        if all(len(e.continuous(key)) >= 2 for e in entries):
            return key
    return None


def compare_task(entries: list[Entry], *, test: ExactTest, alpha: float) -> dict[str, Any]:
    """Rows, pairwise exact tests, letters and Welch tests for the results of one task."""
    names = [e.name for e in entries]
    tests = pairwise_tests(
        names, [e.successes for e in entries], [e.n for e in entries], test=test, alpha=alpha
    )
    means = [e.successes / e.n for e in entries]
    letters = compact_letter_display(names, means, [(t.a, t.b) for t in tests if t.different])
    key = _continuous_key(entries)
    welch = []
    if key is not None:
        m = max(1, len(entries) * (len(entries) - 1) // 2)
        for i, a in enumerate(entries):
            for b in entries[i + 1 :]:
                w = welch_test(a.continuous(key), b.continuous(key))
                welch.append(
                    {"a": a.name, "b": b.name, "key": key, **vars(w), "p_adjusted": min(1.0, m * w.p_value)}
                )
    rows = [_row(e, letters[e.name], key) for e in entries]
    return {
        "task": entries[0].result["task"],
        "test": test,
        "alpha": alpha,
        "rows": rows,
        "pairs": [vars(t) for t in tests],
        "welch": welch,
    }


def _row(e: Entry, letters: str, key: str | None) -> dict[str, Any]:
    post = success_posterior(e.successes, e.n)
    r = e.result
    row: dict[str, Any] = {
        "name": e.name,
        "file": str(e.path),
        "n": e.n,
        "successes": e.successes,
        "success_rate": e.successes / e.n,
        "posterior_mean": post.mean,
        "credible_95": list(post.interval()),
        "wilson_95": list(wilson_interval(e.successes, e.n)),
        "letters": letters,
        "n_errors": int(r.get("n_errors", 0)),
        "behaviour_entropy": r.get("behaviour_entropy"),
        "n_behaviours_seen": r.get("n_behaviours_seen"),
        "behaviour_kl": r.get("behaviour_kl"),
        "nfe": r.get("nfe"),
        "latency_ms": r.get("latency_ms"),
        "run": r.get("run"),
    }
    if key is not None:
        values = e.continuous(key)
        row[f"mean_{key}"] = float(values.mean())
    return row


# ---------------------------------------------------------------------------------------------------------
# Markdown


def _num(value: Any, fmt: str = "{:.3f}") -> str:
    return "–" if value is None else fmt.format(value)


def markdown_table(cmp: dict[str, Any]) -> str:
    """The results table of one task as Markdown."""
    rows = cmp["rows"]
    key = next((k[5:] for k in rows[0] if k.startswith("mean_")), None)
    head = ["policy", "episodes", "success [95% credible]", "Wilson 95%", "letters"]
    head += [f"mean {key}"] if key else []
    head += ["behaviour entropy", "behaviours", "errors", "NFE", "ms/chunk"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lo, hi = r["credible_95"]
        wlo, whi = r["wilson_95"]
        cells = [
            f"`{r['name']}`",
            str(r["n"]),
            f"{r['success_rate']:.1%} [{lo:.1%}, {hi:.1%}]",
            f"[{wlo:.1%}, {whi:.1%}]",
            f"**{r['letters']}**",
        ]
        cells += [_num(r.get(f"mean_{key}"))] if key else []
        cells += [
            _num(r["behaviour_entropy"]),
            _num(r["n_behaviours_seen"], "{}"),
            str(r["n_errors"]),
            _num(r["nfe"], "{}"),
            _num(r["latency_ms"], "{:.2f}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pairs_markdown(cmp: dict[str, Any]) -> list[str]:
    m = len(cmp["pairs"])
    out = [
        f"Pairwise {cmp['test'].capitalize()} exact tests of success, Bonferroni over {m} pair(s) "
        f"(family-wise α = {cmp['alpha']}); policies sharing a letter are not significantly different.",
        "",
        "| pair | p | p (Bonferroni) | different |",
        "|---|---|---|---|",
    ]
    for t in cmp["pairs"]:
        out.append(
            f"| `{t['a']}` vs `{t['b']}` | {t['p_value']:.3g} | {t['p_adjusted']:.3g} | {'yes' if t['different'] else 'no'} |"
        )
    if cmp["welch"]:
        key = cmp["welch"][0]["key"]
        out += ["", f"Welch's t-test on per-episode `{key}` (Bonferroni-adjusted p):", ""]
        out += ["| pair | mean a | mean b | t | df | p (Bonferroni) |", "|---|---|---|---|---|---|"]
        for w in cmp["welch"]:
            out.append(
                f"| `{w['a']}` vs `{w['b']}` | {w['mean_a']:.3f} | {w['mean_b']:.3f} | {w['t']:.2f} | "
                f"{w['df']:.1f} | {w['p_adjusted']:.3g} |"
            )
    return out


def _relative(path: str | Path, start: Path) -> str:
    try:
        return os.path.relpath(Path(path).resolve(), start.resolve())
    except ValueError:  # another drive
        return str(path)


def write_markdown(
    out: Path, comparisons: list[dict[str, Any]], figures: dict[str, list[str]], entries: list[Entry]
) -> Path:
    """Write `report.md` in `out` (tables, tests, figures, video links) and return its path."""
    lines = ["# Policy comparison", ""]
    for cmp in comparisons:
        task = cmp["task"]
        failed = sum(r["n_errors"] for r in cmp["rows"])
        lines += [f"## Task `{task}`", "", markdown_table(cmp), ""]
        lines += [f"Episodes that failed with an error (counted as failures): {failed}.", ""]
        lines += [*_pairs_markdown(cmp), ""]
        for fig in figures.get(task, []):
            lines += [f"![{Path(fig).stem}]({fig})", ""]
    videos = [(e.name, v["video"], v["seed"]) for e in entries for v in e.episodes if v.get("video")]
    if videos:
        lines += ["## Videos", ""]
        lines += [
            f"- `{name}` seed {seed}: [{Path(v).name}]({_relative(v, out)})" for name, v, seed in videos
        ]
        lines.append("")
    path = out / "report.md"
    atomic_write_bytes(path, "\n".join(lines).encode())
    return path


def compare_results(
    paths: list[Path],
    report_dir: Path | None = None,
    *,
    names: list[str] | None = None,
    test: ExactTest = "barnard",
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Compare result JSONs per task; with `report_dir` also write report.md, comparison.json and plots."""
    if len(paths) < 1:
        raise ScorePolicyError("compare needs at least one result JSON")
    entries = load_entries(paths, names)
    tasks: dict[str, list[Entry]] = {}
    for e in entries:
        tasks.setdefault(str(e.result["task"]), []).append(e)
    comparisons = [compare_task(group, test=test, alpha=alpha) for group in tasks.values()]
    summary: dict[str, Any] = {
        "comparisons": comparisons,
        "provenance": provenance(sorted(tasks)),
        "inputs": {str(e.path): e.result.get("provenance") for e in entries},
    }
    if report_dir is not None:
        from scorepolicy.evaluation.report_plots import write_figures

        report_dir.mkdir(parents=True, exist_ok=True)
        figures = {task: write_figures(group, report_dir) for task, group in tasks.items()}
        summary["report"] = str(write_markdown(report_dir, comparisons, figures, entries))
        summary["figures"] = figures
        atomic_write_json(report_dir / "comparison.json", summary)
    return summary
