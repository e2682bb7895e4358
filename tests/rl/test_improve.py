"""`scorepolicy improve` / `api.improve`: an improved run end to end, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.rl.conftest import save_base_run

from scorepolicy import api
from scorepolicy.cli import main
from scorepolicy.core.task import Task
from scorepolicy.data.dataset_task import DATASET_TASK
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig, evaluate
from scorepolicy.files import atomic_write_json
from scorepolicy.policies import ChunkPolicy, ScorePolicy
from scorepolicy.rl.dsrl_config import DSRLConfig
from scorepolicy.rl.dsrl_policy import DSRLPolicy

SMALL = DSRLConfig(hidden=32, layers=2, learning_starts=32, batch_size=32, utd=0.5)


@pytest.fixture
def reach_registered(monkeypatch: pytest.MonkeyPatch, reach_task: Task) -> None:
    """`get_task('reach')` answers the tiny reach task inside the API."""
    import scorepolicy.api.improvement as improve_module

    real = improve_module.get_task
    monkeypatch.setattr(
        improve_module, "get_task", lambda name: reach_task if name == "reach" else real(name)
    )


def test_improve_writes_an_evaluable_run_whose_first_point_is_the_base(
    tmp_path: Path, bimodal_base: ScorePolicy, reach_task: Task, reach_registered: None
) -> None:
    torch.set_num_threads(1)
    run = save_base_run(bimodal_base, tmp_path / "base")
    out = tmp_path / "improved"
    job = api.ImproveJob(
        run=run,
        out=out,
        env_steps=200,
        eval_every=200,
        eval_episodes=20,
        n_envs=4,
        progress=False,
        dsrl=SMALL,
    )
    result = api.improve(job)
    steps = [int(r["env_step"]) for r in result["curve"]]
    assert steps[0] == 0 and steps[-1] >= 200
    base = ScorePolicy.from_pretrained(run).optimize_for_inference()
    expected = evaluate(base, reach_task, EvalConfig(episodes=20, seed=0, n_envs=20, progress=False))
    assert float(result["curve"][0]["success_rate"]) == expected["success_rate"]
    meta = json.loads((out / "config.json").read_text())
    assert meta["kind"] == "dsrl" and meta["reward"] == "success" and meta["method"]["variant"] == "na"
    for name in ("base/model.safetensors", "base/config.json", "model.safetensors", "improve_config.json"):
        assert (out / name).is_file(), name
    record = json.loads((out / "improve_config.json").read_text())
    assert record["provenance"]["versions"]["torch"] == torch.__version__ and record["method"] == "dsrl"
    policy = ChunkPolicy.from_pretrained(out)
    assert isinstance(policy, DSRLPolicy)
    assert set(policy.actor.state_dict()) == set(_tensors(out / "model.safetensors"))
    weights = out / "base" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-2] + b"\x00\x00")
    with pytest.raises(ScorePolicyError, match="sha256"):
        ChunkPolicy.from_pretrained(out)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from scorepolicy.files import load_tensors

    return load_tensors(path)


def test_improve_refuses_a_run_without_a_simulator(tmp_path: Path, bimodal_base: ScorePolicy) -> None:
    run = save_base_run(bimodal_base, tmp_path / "base")
    atomic_write_json(run / "train_config.json", {"task": DATASET_TASK})
    out = tmp_path / "out"
    assert main(["improve", str(run), "--out", str(out), "--env-steps", "100"]) == 2
    assert not out.exists()


def test_improve_refuses_a_stochastic_sampler_and_names_the_fix(
    tmp_path: Path, bimodal_base: ScorePolicy, reach_registered: None
) -> None:
    run = save_base_run(bimodal_base, tmp_path / "base")
    meta = json.loads((run / "config.json").read_text())
    meta["policy"]["diffusion"]["sampler"] = "euler_ancestral"
    (run / "config.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    with pytest.raises(ScorePolicyError, match="--sampler ddim"):
        api.improve(api.ImproveJob(run=run, out=out, env_steps=100, progress=False))
    assert not out.exists()
    job = api.ImproveJob(run=run, out=out, sampler="ddim")
    api.improve_checks(job)  # the override is accepted


def test_improve_refuses_unknown_method_missing_weights_and_overlapping_seeds(
    tmp_path: Path, bimodal_base: ScorePolicy, reach_registered: None
) -> None:
    run = save_base_run(bimodal_base, tmp_path / "base")
    out = tmp_path / "out"
    with pytest.raises(ScorePolicyError, match="unknown method 'ppo'"):
        api.improve(api.ImproveJob(run=run, out=out, method="ppo"))  # type: ignore[arg-type]
    with pytest.raises(ScorePolicyError, match="overlaps the training seeds"):
        api.improve(api.ImproveJob(run=run, out=out, eval_seed=1_000_010))
    (run / "model.safetensors").unlink()
    with pytest.raises(ScorePolicyError, match="base weights missing"):
        api.improve(api.ImproveJob(run=run, out=out))
    assert not out.exists()
