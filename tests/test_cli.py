"""The command line: user errors are one line on stderr with exit status 2, and nothing is overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scorepolicy.cli import main
from scorepolicy.core.episodes import Episodes
from scorepolicy.data.zarr_replay import write_replay_zarr
from tests.conftest import tiny_policy


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err
    return err


def _pusht_like_zarr(path: Path, nan: bool = False) -> Path:
    rng = np.random.default_rng(0)
    state = rng.uniform(50, 450, size=(40, 5)).astype(np.float32)
    action = rng.uniform(50, 450, size=(40, 2)).astype(np.float32)
    if nan:
        action[25, 0] = np.nan
    write_replay_zarr(Episodes({"state": state, "action": action}, np.array([20, 40])), path)
    return path


def test_train_without_data_says_which_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--task", "pusht", "--out", str(tmp_path / "run")])
    _one_line_error(capsys, code, "--data PATH")


def test_train_on_missing_or_malformed_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["train", "--task", "pusht", "--data", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "r")]
    )
    _one_line_error(capsys, code, "missing.zarr")
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / "junk.txt").write_text("not a zarr")
    code = main(["train", "--task", "pusht", "--data", str(bad), "--out", str(tmp_path / "r")])
    _one_line_error(capsys, code, "bad.zarr")


def test_nan_actions_are_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _pusht_like_zarr(tmp_path / "nan.zarr", nan=True)
    code = main(["train", "--task", "pusht", "--data", str(data), "--out", str(tmp_path / "r")])
    _one_line_error(capsys, code, "action")
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_existing_run_is_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _pusht_like_zarr(tmp_path / "ok.zarr")
    args = [
        "train",
        "--task",
        "pusht",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "r"),
        "--train.steps",
        "2",
    ]
    args += [
        "--train.no-progress",
        "--train.no-tensorboard",
        "--policy.mlp.width",
        "16",
        "--dataset.val-fraction",
        "0",
    ]
    assert main(args) == 0
    capsys.readouterr()
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    _one_line_error(capsys, main(args), "--resume")
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before
    assert main([*args[:-1], "0", "--resume", "--train.steps", "3"]) == 0


def test_eval_and_latency_on_broken_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_error(capsys, main(["eval", str(tmp_path / "nope")]), "no such run directory")
    run = tmp_path / "run"
    tiny_policy().save_pretrained(run)
    _one_line_error(capsys, main(["eval", str(run)]), "train_config.json")
    (run / "train_config.json").write_text(json.dumps({"task": "pusht"}))
    (run / "model.safetensors").unlink()
    _one_line_error(capsys, main(["latency", str(run)]), "model.safetensors")


def test_latency_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    tiny_policy().save_pretrained(run)
    assert main(["latency", str(run), "--repeats", "5", "--json", str(tmp_path / "lat.json")]) == 0
    result = json.loads((tmp_path / "lat.json").read_text())
    assert result["ms_per_chunk"] > 0 and result["threads"] == 1 and result["batch"] == 1
    assert "ms per chunk" in capsys.readouterr().out


def test_unknown_task_lists_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "--task", "walker"])
    assert e.value.code == 2
    assert "pusht" in capsys.readouterr().err


def test_select_installs_the_best_snapshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`select` rolls out every snapshot on validation seeds and installs the best as RUN/best."""
    run = tmp_path / "r"
    train = ["train", "--task", "obstacles", "--out", str(run), "--dataset.n-demos", "10"]
    train += ["--train.steps", "30", "--train.checkpoint-every", "10", "--train.warmup-steps", "5"]
    train += ["--train.no-progress", "--train.no-tensorboard", "--policy.mlp.width", "32"]
    assert main(train) == 0
    assert main(["select", str(run), "--episodes", "6", "--seed", "7", "--metric", "success_rate"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((run / "selection.json").read_text())
    rows = summary["snapshots"]
    assert [r["snapshot"] for r in rows] == ["step_0000010", "step_0000020", "step_0000030"]
    best = max(rows, key=lambda r: r["success_rate"])
    assert summary["best"] == best["snapshot"] and "<- best" in out
    assert summary["first_seed"] == 7 and summary["episodes"] == 6
    chosen = run / "checkpoints" / best["snapshot"] / "model.safetensors"
    assert (run / "best" / "model.safetensors").read_bytes() == chosen.read_bytes()
    assert main(["eval", str(run / "best"), "--episodes", "2", "--no-latency"]) == 0  # task known
    assert main(["select", str(run), "--episodes", "2"]) == 0  # re-selection replaces best/ whole
    installed = {p.name for p in (run / "best").iterdir()}
    assert installed == {p.name for p in chosen.parent.iterdir()} | {"train_config.json"}
    assert (run / "best").is_symlink()  # swapped in one rename, never missing
    assert not [
        p for p in run.glob(".*") if p.name.endswith(".tmp") or ".link-" in p.name or "select" in p.name
    ]
    assert len(list(run.glob(".best-*"))) <= 2  # the installed version and the one before it


def test_select_without_snapshots_says_how_to_keep_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    tiny_policy().save_pretrained(run)
    (run / "train_config.json").write_text(json.dumps({"task": "obstacles"}))
    _one_line_error(capsys, main(["select", str(run)]), "keep-snapshots")


@pytest.fixture(scope="module")
def obstacle_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny obstacle-task run (20 steps, snapshots at 10 and 20) that eval, latency and select accept."""
    run = tmp_path_factory.mktemp("runs") / "r"
    train = ["train", "--task", "obstacles", "--out", str(run), "--dataset.n-demos", "6"]
    train += ["--train.steps", "20", "--train.checkpoint-every", "10", "--train.warmup-steps", "2"]
    train += ["--train.no-progress", "--train.no-tensorboard", "--policy.mlp.width", "16"]
    assert main(train) == 0
    return run


EVAL = ["--episodes", "2", "--n-envs", "2", "--no-latency"]


def test_eval_never_writes_over_the_runs_own_files(
    obstacle_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = obstacle_run / "model.safetensors"
    before = weights.read_bytes()
    for extra in ([], ["--overwrite"]):
        code = main(["eval", str(obstacle_run), *EVAL, "--json", str(weights), *extra])
        _one_line_error(capsys, code, "--json", "model.safetensors", "run")
    snapshot_config = obstacle_run / "checkpoints" / "step_0000010" / "config.json"
    code = main(["eval", str(obstacle_run), *EVAL, "--plot", str(snapshot_config), "--overwrite"])
    _one_line_error(capsys, code, "--plot")
    code = main(["latency", str(obstacle_run), "--json", str(obstacle_run / "train_config.json")])
    _one_line_error(capsys, code, "--json", "train_config.json")
    assert weights.read_bytes() == before


def test_eval_json_needs_overwrite_and_carries_provenance(
    obstacle_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "result.json"
    out.write_text("keep me")
    _one_line_error(capsys, main(["eval", str(obstacle_run), *EVAL, "--json", str(out)]), "--overwrite")
    assert out.read_text() == "keep me"
    assert main(["eval", str(obstacle_run), *EVAL, "--json", str(out), "--overwrite"]) == 0
    prov = json.loads(out.read_text())["provenance"]
    assert prov["versions"]["scorepolicy"] and prov["versions"]["torch"] and prov["versions"]["numpy"]
    assert prov["versions"]["gymnasium"] and prov["python"] and prov["platform"] and prov["time"]
    assert isinstance(prov["command"], list) and prov["command"]  # this process's command line
    assert set(prov) >= {"commit", "dirty"}
    train_prov = json.loads((obstacle_run / "train_config.json").read_text())["provenance"]
    assert train_prov["versions"] == prov["versions"]


def test_eval_under_a_condition_records_it(obstacle_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "noisy.json"
    args = ["eval", str(obstacle_run), *EVAL, "--json", str(out), "--condition", "obs-noise"]
    assert main([*args, "--condition-scale", "0.05"]) == 0
    assert json.loads(out.read_text())["condition"] == {"name": "obs-noise", "scale": 0.05}
    assert main(["eval", str(obstacle_run), *EVAL, "--json", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["condition"] == {"name": "nominal"}


def test_video_dir_and_report_contents_need_overwrite(
    obstacle_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "episode_5.mp4").write_bytes(b"old video")
    code = main(["eval", str(obstacle_run), *EVAL, "--video-dir", str(videos)])
    _one_line_error(capsys, code, "--video-dir", "--overwrite")
    assert (videos / "episode_5.mp4").read_bytes() == b"old video"
    result = tmp_path / "a.json"
    assert main(["eval", str(obstacle_run), *EVAL, "--json", str(result)]) == 0
    capsys.readouterr()
    _one_line_error(capsys, main(["compare", str(result), "--json", str(result), "--overwrite"]), "input")
    report = tmp_path / "report"
    report.mkdir()
    (report / "notes.md").write_text("mine")
    _one_line_error(capsys, main(["compare", str(result), "--report", str(report)]), "--report")
    assert main(["compare", str(result), "--json", str(tmp_path / "cmp.json")]) == 0
    assert "provenance" in json.loads((tmp_path / "cmp.json").read_text())


def test_latency_json_is_not_replaced_without_overwrite(
    obstacle_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lat.json"
    args = ["latency", str(obstacle_run), "--repeats", "3", "--json", str(out)]
    assert main(args) == 0
    assert json.loads(out.read_text())["provenance"]["versions"]["torch"]
    capsys.readouterr()
    _one_line_error(capsys, main(args), "--json", "--overwrite")
    assert main([*args, "--overwrite"]) == 0


def test_data_info_json_cannot_land_inside_the_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _pusht_like_zarr(tmp_path / "d.zarr")
    code = main(["data", "info", str(data), "--json", str(data / ".zattrs"), "--overwrite"])
    _one_line_error(capsys, code, "input")


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["eval", "RUN", "--episodes", "0"], "--episodes"),
        (["eval", "RUN", "--nfe", "0"], "--nfe"),
        (["eval", "RUN", "--n-envs", "0"], "--n-envs"),
        (["eval", "RUN", "--threads", "0"], "--threads"),
        (["latency", "RUN", "--nfe", "0"], "--nfe"),
        (["latency", "RUN", "--repeats", "0"], "--repeats"),
        (["select", "RUN", "--episodes", "0"], "--episodes"),
        (["plan", "--baseline", "0.6", "--effect", "0.1", "--power", "1.5"], "--power"),
        (["plan", "--baseline", "0.6", "--effect", "0.5"], "--effect"),
        (["compare", "a.json", "--alpha", "0"], "--alpha"),
        (["demo", "--steps", "0"], "--steps"),
        (["eval", "RUN", "--condition", "wind"], "valid conditions: nominal, obs-noise, block-shift"),
        (["eval", "RUN", "--condition-scale", "2"], "--condition-scale"),
        (["eval", "RUN", "--condition", "obs-noise", "--condition-step", "3"], "--condition-step"),
    ],
)
def test_bad_command_fields_are_one_line_errors_before_any_work(
    args: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(tmp_path / "missing-run") if a == "RUN" else a for a in args]
    _one_line_error(capsys, main(args), flag)


def test_per_task_success_is_printed_for_multi_task_results(tmp_path: Path) -> None:
    from scorepolicy.commands.compare import format_per_task, per_task_table

    per_task = {
        "reach-v3": {"success_rate": 0.9, "success_ci": [0.78, 0.96], "n": 50},
        "push-v3": {"success_rate": 0.5, "success_ci": [0.37, 0.63], "n": 50},
    }
    text = format_per_task({"per_task": per_task})
    assert "reach-v3" in text and "0.900" in text and "[0.370, 0.630]" in text and "50" in text
    assert format_per_task({"success_rate": 0.5}) == ""
    (tmp_path / "a.json").write_text(json.dumps({"per_task": per_task}))
    (tmp_path / "b.json").write_text(
        json.dumps({"per_task": {"push-v3": {**per_task["push-v3"], "success_rate": 0.7}}})
    )
    table = per_task_table([tmp_path / "a.json", tmp_path / "b.json"], ["mode", "dense"])
    assert table.splitlines()[0] == "| task | mode | dense |"
    assert (
        "| push-v3 | 50.0% (37%-63%) | 70.0% (37%-63%) |" in table
        and "| reach-v3 | 90.0% (78%-96%) | – |" in table
    )


def test_demo_runs_end_to_end_and_records_how(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    threads_before = torch.get_num_threads()
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n-demos", "6", "--steps", "20", "--episodes", "4", "--nfe", "2"]
    assert main(args) == 0
    summary = json.loads((out / "demo.json").read_text())
    assert summary["episodes"] == 4 and summary["steps"] == 20 and summary["threads"] == 1
    assert summary["sampler"] == "euler_ancestral" and summary["nfe"] == 2
    assert 0 <= summary["success_rate"] <= 1 and summary["train_steps_per_s"] > 0
    assert summary["provenance"]["versions"]["torch"] and (out / "rollouts.png").is_file()
    assert torch.get_num_threads() == threads_before  # the demo's one thread does not leak
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("not a demo")
    capsys.readouterr()
    _one_line_error(capsys, main(["demo", "--out", str(other), "--steps", "1"]), "not a demo run")
    assert (other / "notes.txt").read_text() == "not a demo"
