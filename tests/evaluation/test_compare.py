"""`scorepolicy compare` and `plan`: report files with the table, letters and plots; the planner's output."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scorepolicy.cli import main
from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig, evaluate
from scorepolicy.evaluation.report import compare_results


class Scaled:
    """The conftest controller with its actions scaled: small gains rarely reach the target in time."""

    def __init__(self, base: Any, gain: float) -> None:
        self.base, self.gain = base, gain

    def reset(self) -> None:
        self.base.reset()

    def select_action(self, obs: Any) -> Any:
        return self.gain * self.base.select_action(obs)


@pytest.fixture(scope="module")
def results(
    tmp_path_factory: pytest.TempPathFactory, point_task: Callable[..., Task], chunk_policy: type[Any]
) -> list[Path]:
    out = tmp_path_factory.mktemp("results")
    paths = []
    for name, gain, nfe in (("good", 1.0, 3), ("good_nfe1", 0.5, 1), ("poor", 0.1, 3)):
        path = out / f"{name}.json"
        cfg = EvalConfig(episodes=40, n_envs=20, json_path=path, progress=False, keep_trajectories=True)
        evaluate(
            Scaled(chunk_policy(), gain), point_task(max_steps=10), cfg, extra={"nfe": nfe, "run": "runs/x"}
        )
        paths.append(path)
    return paths


def test_compare_writes_report_with_table_letters_and_plots(results: list[Path], tmp_path: Path) -> None:
    summary = compare_results(results, tmp_path / "report", test="fisher")
    (cmp,) = summary["comparisons"]
    rows = {r["name"]: r for r in cmp["rows"]}
    assert rows["good"]["success_rate"] > 0.6 and rows["poor"]["success_rate"] < 0.2
    assert rows["good"]["letters"] != rows["poor"]["letters"]  # clearly different
    assert not set(rows["good"]["letters"]) & set(rows["poor"]["letters"])
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| policy | episodes | success [95% credible]" in report
    for name in rows:
        assert f"`{name}`" in report and f"**{rows[name]['letters']}**" in report
    for fig in ("point_posterior.png", "point_success_vs_nfe.png", "point_trajectories.png"):
        assert (tmp_path / "report" / fig).stat().st_size > 1000 and f"]({fig})" in report
    saved = json.loads((tmp_path / "report" / "comparison.json").read_text())
    assert saved["comparisons"][0]["rows"][0]["name"] == "good"
    assert len(saved["comparisons"][0]["pairs"]) == 3


def test_compare_and_plan_commands(
    results: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["compare", *map(str, results), "--report", str(tmp_path / "r"), "--names", "a", "b", "c"]) == 0
    )
    out = capsys.readouterr().out
    assert "| `a` |" in out and (tmp_path / "r" / "report.md").is_file()
    assert (
        main(
            [
                "plan",
                "--baseline",
                "0.5",
                "--effect",
                "0.2",
                "--test",
                "fisher",
                "--json",
                str(tmp_path / "p.json"),
            ]
        )
        == 0
    )
    plan = json.loads((tmp_path / "p.json").read_text())
    assert plan["power"] >= 0.8 and f"{plan['n']} rollouts per policy" in capsys.readouterr().out
    assert main(["plan", "--baseline", "0.9", "--effect", "0.2"]) == 2  # a one-line error, not a traceback


def test_compare_rejects_non_results(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ScorePolicyError, match="field 'task' missing"):
        compare_results([bad])
