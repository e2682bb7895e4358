"""The `scorepolicy compare` and `scorepolicy plan` commands (arguments and runners)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from scorepolicy.commands.outputs import check_output_dir, check_output_file
from scorepolicy.errors import ScorePolicyError, check_field
from scorepolicy.evaluation.report import compare_results, markdown_table
from scorepolicy.evaluation.stats import ExactTest, plan_sample_size
from scorepolicy.files import atomic_write_json, read_json
from scorepolicy.provenance import provenance


@dataclass
class Compare:
    """Compare evaluation results (JSONs of `scorepolicy eval --json`): success with Beta-posterior and
    Wilson intervals, Bonferroni-corrected exact pairwise tests as compact letters, Welch's t-test on
    coverage, behaviour entropy, latency; with --report a Markdown report with plots."""

    results: tyro.conf.Positional[list[Path]]
    """Result JSONs to compare (grouped by task)."""
    report: Path | None = None
    """Write report.md, comparison.json and the figures into this directory."""
    names: list[str] | None = None
    """Label of each result in the table (default: the file names without .json)."""
    test: ExactTest = "barnard"
    """Exact test of two success rates: Barnard (unconditional, more powerful) or Fisher."""
    alpha: float = 0.05
    """Family-wise significance level (Bonferroni over all pairs)."""
    json: Path | None = None
    """Write the comparison (rows, tests, letters) as JSON here."""
    overwrite: bool = False
    """Replace an existing --json file and the files of an existing --report directory."""

    def __post_init__(self) -> None:
        check_field("--alpha", self.alpha, above=0, below=1)
        if self.names is not None and len(self.names) != len(self.results):
            raise ScorePolicyError(
                f"--names: give one name per result ({len(self.results)}), got {len(self.names)}"
            )


@dataclass
class PlanSize:
    """Rollouts per policy needed to detect a difference in success rate with the given power."""

    baseline: float
    """Success rate of the reference policy (e.g. 0.6)."""
    effect: float
    """Difference to detect (e.g. 0.15: the other policy succeeds 75% of the time)."""
    power: float = 0.8
    """Probability of detecting the difference."""
    alpha: float = 0.05
    """Family-wise significance level."""
    policies: int = 2
    """Policies to be compared pairwise (the level is split over K(K−1)/2 pairs)."""
    test: ExactTest = "barnard"
    """Exact test the power is computed for (the one `compare` uses)."""
    json: Path | None = None
    """Write the plan as JSON here."""
    overwrite: bool = False
    """Replace an existing --json file."""

    def __post_init__(self) -> None:
        check_field("--baseline", self.baseline, at_least=0, at_most=1)
        check_field("--power", self.power, above=0, below=1)
        check_field("--alpha", self.alpha, above=0, below=1)
        check_field("--policies", self.policies, at_least=2)
        if not (abs(self.effect) > 0 and 0 <= self.baseline + self.effect <= 1):
            raise ScorePolicyError(
                f"--effect: must be non-zero with --baseline + --effect in [0, 1], got {self.effect}"
            )


def format_per_task(result: dict[str, Any]) -> str:
    """Multi-task results: one line per task with its success, 95% Wilson interval and episodes ('' otherwise)."""
    per_task = result.get("per_task") or {}
    if not per_task:
        return ""
    width = max(len(name) for name in per_task)
    lines = [f"{'task'.ljust(width)}  success  95% Wilson      episodes"]
    for name, row in per_task.items():
        lo, hi = row["success_ci"]
        lines.append(f"{name.ljust(width)}  {row['success_rate']:7.3f}  [{lo:.3f}, {hi:.3f}]  {row['n']:8d}")
    return "\n".join(lines)


def per_task_table(results: list[Path], names: list[str] | None) -> str:
    """Success per task (rows) and result (columns) for multi-task results ('' when none has tasks)."""
    tables = {}
    for i, path in enumerate(results):
        per_task = read_json(path).get("per_task") or {}
        if per_task:
            tables[names[i] if names else path.stem] = per_task
    if not tables:
        return ""
    tasks = sorted({t for table in tables.values() for t in table})
    head = "| task | " + " | ".join(tables) + " |"
    lines = [head, "|---" * (len(tables) + 1) + "|"]
    for task in tasks:
        cells = []
        for table in tables.values():
            row = table.get(task)
            cells.append(
                "–"
                if row is None
                else "{:.1%} ({:.0%}-{:.0%})".format(row["success_rate"], *row["success_ci"])
            )
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_compare(args: Compare) -> str:
    """Run the comparison; return the text to print (the Markdown tables and where the report is)."""
    check_output_file(args.json, "--json", overwrite=args.overwrite, inputs=args.results)
    check_output_dir(args.report, "--report", overwrite=args.overwrite, inputs=args.results)
    summary = compare_results(args.results, args.report, names=args.names, test=args.test, alpha=args.alpha)
    if args.json is not None:
        atomic_write_json(args.json, summary)
    text = []
    for cmp in summary["comparisons"]:
        text += [f"task {cmp['task']}:", markdown_table(cmp), ""]
    per_task = per_task_table(args.results, args.names)
    if per_task:
        text += ["success per task (95% Wilson):", per_task, ""]
    if "report" in summary:
        text.append(f"report: {summary['report']}")
    return "\n".join(text)


def run_plan(args: PlanSize) -> str:
    """Plan the sample size; return the text to print."""
    check_output_file(args.json, "--json", overwrite=args.overwrite)
    m = args.policies * (args.policies - 1) // 2
    try:
        plan = plan_sample_size(
            args.baseline, args.effect, power=args.power, alpha=args.alpha, n_comparisons=m, test=args.test
        )
    except ValueError as e:
        raise ScorePolicyError(f"plan: {e}") from e
    if args.json is not None:
        atomic_write_json(args.json, {**vars(plan), "provenance": provenance()})
    level = f"α = {args.alpha}" + (f" / {m} pairs" if m > 1 else "")
    return (
        f"{plan.n} rollouts per policy: exact {args.test.capitalize()} test at {level} detects "
        f"{args.baseline:.2f} vs {args.baseline + args.effect:.2f} with power {plan.power:.3f} "
        f"(target {args.power}); the normal approximation says {plan.normal_n}"
    )
