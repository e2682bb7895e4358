"""`scorepolicy eval RUN --monitor DIR` and `scorepolicy guard calibrate` through the command line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from scorepolicy.api import load_policy
from scorepolicy.api.guard import BenchConfig, analyse_saved, run_bench
from scorepolicy.cli import main
from scorepolicy.envs.registry import get_task
from scorepolicy.evaluation.rollout import RolloutOptions
from scorepolicy.guard import Monitor
from scorepolicy.guard.calibrate import GuardSettings, fit_monitor, record_rollouts
from scorepolicy.guard.scores import RNDConfig


@pytest.fixture(scope="module")
def obstacle_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny obstacle-task run (20 training steps)."""
    run = tmp_path_factory.mktemp("runs") / "r"
    train = ["train", "--task", "obstacles", "--out", str(run), "--dataset.n-demos", "6"]
    train += ["--train.steps", "20", "--train.warmup-steps", "2", "--train.no-progress"]
    train += ["--train.no-tensorboard", "--policy.mlp.width", "16"]
    assert main(train) == 0
    return run


def _monitor(run: Path, out: Path) -> None:
    """A monitor of the run fitted on any 8 episodes (the tiny run rarely succeeds)."""
    policy = load_policy(run)
    settings = GuardSettings(n_samples=3, window=2, rnd=RNDConfig(width=16, out_dim=4, steps=20))
    opts = RolloutOptions(n_envs=8, max_steps=40, progress=False)
    _, traces = record_rollouts(policy, get_task("obstacles"), range(700, 708), settings, opts)
    parts = [traces[s] for s in sorted(traces)]
    fit_monitor(policy, parts[:4], parts[4:], 0.2, settings).save(out)


def test_eval_with_monitor_records_alarms_and_rates(obstacle_run: Path, tmp_path: Path) -> None:
    _monitor(obstacle_run, tmp_path / "guard")
    out = tmp_path / "guarded.json"
    args = ["eval", str(obstacle_run), "--episodes", "4", "--n-envs", "2", "--no-latency"]
    assert main([*args, "--monitor", str(tmp_path / "guard"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in ("alarm_rate_on_successes", "alarm_rate_on_failures"):
        assert key in result and f"{key}_ci" in result
    failures = [e for e in result["episodes"] if not e["success"]]
    assert result["n_failures_monitored"] == len(failures) > 0
    lo, hi = result["alarm_rate_on_failures_ci"]
    assert lo <= result["alarm_rate_on_failures"] <= hi
    assert result["monitor"] == str(tmp_path / "guard") and result["monitor_settings"]["delta"] == 0.2
    for e in result["episodes"]:
        assert isinstance(e["alarm"], bool)
        assert (e["first_alarm_step"] is None) == (not e["alarm"])
    plain = tmp_path / "plain.json"
    assert main([*args, "--json", str(plain)]) == 0
    strip = ("alarm", "first_alarm_step")
    same = [{k: v for k, v in e.items() if k not in strip} for e in result["episodes"]]
    assert same == json.loads(plain.read_text())["episodes"]  # guarding does not change the episodes


def test_guard_errors_are_one_line(
    obstacle_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["eval", str(obstacle_run), "--episodes", "2", "--no-latency", "--monitor"]
    assert main([*args, str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no calibrated monitor" in err
    _monitor(obstacle_run, tmp_path / "guard")
    assert main([*args, str(tmp_path / "guard"), "--nfe", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "NFE 7" in err


def test_guard_calibrate_needs_enough_successes(
    obstacle_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["guard", "calibrate", str(obstacle_run), "--out", str(tmp_path / "g"), "--episodes", "3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "needs at least 19" in err
    assert not (tmp_path / "g" / "monitor.json").exists()


def test_guard_bench_reports_every_condition_and_rule(obstacle_run: Path, tmp_path: Path) -> None:
    _monitor(obstacle_run, tmp_path / "guard")
    out, png = tmp_path / "bench.json", tmp_path / "scores.png"
    args = ["guard", "bench", str(obstacle_run), "--monitor", str(tmp_path / "guard"), "--episodes", "4"]
    args += ["--conditions", "nominal,block-shift", "--n-envs", "4", "--json", str(out), "--plot", str(png)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert set(result["conditions"]) == {"nominal", "block-shift"}
    for cond in result["conditions"].values():
        assert cond["n_episodes"] == 4 and set(cond["rules"]) == {"and", "rnd", "ace"}
        for metrics in cond["rules"].values():
            assert {"tpr", "tnr", "accuracy", "mean_detection_time", "twa", "twa_ci"} <= set(metrics)
    assert [row["delta"] for row in result["false_alarms_on_fresh_successes"]] == [0.05, 0.1]
    assert result["overhead"]["n_samples"] == 3 and result["overhead"]["guarded_cpu_ms"] > 0
    assert result["provenance"]["versions"]["scorepolicy"]
    assert ("plot" in result) == png.is_file()
    chosen = result["selection"]["chosen"]  # chosen on 4 validation episodes per condition from 400000
    assert result["selection"]["seeds"] == [400_000, 400_003] and set(chosen) == {"and", "rnd", "ace"}


def test_saved_bench_reanalyses_to_the_same_result(obstacle_run: Path, tmp_path: Path) -> None:
    """`run_bench(save=DIR)` keeps the monitor and the per-decision scores; `analyse_saved` on them gives the
    same metrics as the rollouts did, and another threshold style needs no new rollouts."""
    _monitor(obstacle_run, tmp_path / "guard")
    cfg = BenchConfig(
        run=obstacle_run,
        monitor=tmp_path / "guard",
        conditions="nominal,block-shift",
        episodes=4,
        n_envs=4,
        overhead_repeats=3,
        save=tmp_path / "saved",
    )
    result = run_bench(cfg)
    again = analyse_saved(tmp_path / "saved", cfg)

    def comparable(r: dict[str, object]) -> object:
        return json.loads(
            json.dumps({k: v for k, v in r.items() if k not in ("overhead", "seconds", "provenance")})
        )

    assert comparable(again) == comparable(result)
    chosen = result["selection"]["chosen"]
    assert result["selection"]["seeds"] == [400_000, 400_003]
    assert (result["monitor"]["window"], result["monitor"]["style"]) == (
        chosen["and"]["window"],
        chosen["and"]["style"],
    )
    monitor = Monitor.load(tmp_path / "saved" / "monitor").recalibrated(style="normalized")
    other = analyse_saved(tmp_path / "saved", dataclasses.replace(cfg, select_seed=None), monitor)
    assert "selection" not in other
    assert other["monitor"]["style"] == "normalized"
    assert set(other["conditions"]) == {"nominal", "block-shift"}
