"""`scorepolicy train` parsing: every field validated at parse time, per-task recipes, --threads."""

from __future__ import annotations

from pathlib import Path

import pytest

from scorepolicy.cli import main, parse_train


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--train.batch-size", "0"),
        ("--dataset.val-fraction", "1.5"),
        ("--dataset.val-fraction", "-0.5"),
        ("--dataset.max-train-episodes", "0"),
        ("--policy.horizon", "0"),
        ("--policy.n-obs-steps", "0"),
        ("--policy.n-action-steps", "17"),
        ("--policy.mlp.width", "0"),
        ("--policy.transformer.n-heads", "3"),
        ("--policy.mode.top-k", "5"),
        ("--policy.goal.dropout", "1"),
        ("--policy.diffusion.sigma-min", "0"),
        ("--policy.diffusion.nfe", "0"),
        ("--policy.ddpm.inference-steps", "0"),
        ("--threads", "-1"),
    ],
)
def test_out_of_range_flag_is_a_one_line_error_naming_it(
    flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--task", "obstacles", "--out", str(out), flag, value]) == 2
    err = capsys.readouterr().err
    shown = "--train.num-threads" if flag == "--threads" else flag
    assert err.startswith(f"error: {shown}") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not out.exists()  # nothing written


def test_horizon_zero_blames_the_horizon(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", "--task", "obstacles", "--out", str(tmp_path / "r"), "--policy.horizon", "0"]) == 2
    assert "--policy.horizon: must be ≥ 1, got 0" in capsys.readouterr().err


def test_task_recipes_set_defaults_and_flags_override_them() -> None:
    mt10 = parse_train(["--task", "metaworld-mt10"])
    assert mt10.policy.denoiser == "mode" and mt10.policy.n_obs_steps == 1
    assert mt10.train.batch_size == 128 and mt10.train.steps == 8_000
    explicit = parse_train(["--task", "metaworld-mt10", "--train.steps", "100", "--denoiser", "transformer"])
    assert explicit.train.steps == 100 and explicit.policy.denoiser == "transformer"
    assert explicit.train.batch_size == 128
    pusht = parse_train(["--task", "pusht"])
    assert pusht.dataset.max_train_episodes == 90 and pusht.train.steps == 40_000
    assert pusht.policy.denoiser == "mlp" and pusht.policy.n_obs_steps == 2
    assert (
        parse_train(["--task", "pusht", "--dataset.max-train-episodes", "None"]).dataset.max_train_episodes
        is None
    )
    generic = parse_train([])
    assert generic.dataset.max_train_episodes is None and generic.train.steps == 30_000


def test_help_states_each_task_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_train(["--help"])
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "metaworld-mt10: --policy.denoiser mode --policy.n-obs-steps 1 --train.batch-size 128" in text
    assert "pusht: --dataset.max-train-episodes 90" in text


def test_one_thread_by_default_and_threads_shorthand() -> None:
    assert parse_train([]).train.num_threads == 1
    assert parse_train(["--threads", "2"]).train.num_threads == 2
    assert parse_train(["--threads=0"]).train.num_threads == 0
