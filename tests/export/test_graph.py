"""The exported chunk graph computes the torch policy's chunk: onnxruntime against torch for the same
observations and noise (eager and frozen TorchScript), with the metadata that makes the file
self-describing, and the cases export refuses."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from tests.conftest import tiny_policy
from tests.export.conftest import random_policy

from scorepolicy.errors import ScorePolicyError
from scorepolicy.export import METADATA_KEYS, export_onnx, read_metadata
from scorepolicy.export.runtime import OnnxPolicy
from scorepolicy.policies import ScorePolicy, build_policy

Exported = Callable[..., tuple[ScorePolicy, Path]]
TOLERANCE = 1e-5


def _inputs(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, 3, generator=g) * 3, torch.randn(batch, 4, 2, generator=g)


@pytest.mark.parametrize(
    ("denoiser", "nfe"), [("mlp", 1), ("mlp", 3), ("transformer", 1), ("transformer", 3)]
)
def test_onnxruntime_matches_the_torch_chunk(exported: Exported, denoiser: str, nfe: int) -> None:
    policy, path = exported(denoiser, nfe)
    graph = OnnxPolicy(path)
    for batch in (1, 5):
        obs, noise = _inputs(batch, seed=batch)
        eager = policy.predict_action_chunk(obs, noise=noise)
        onnx_chunk = graph.predict_action_chunk(obs, noise=noise)
        assert onnx_chunk.shape == (batch, 4, 2)
        assert (onnx_chunk - eager).abs().max().item() <= TOLERANCE
        other = graph.predict_action_chunk(obs, noise=torch.flip(noise, dims=[1]))
        assert (other - onnx_chunk).abs().max().item() > 1e-3  # the noise input matters
    frozen = random_policy(denoiser).optimize_for_inference()
    assert frozen.inference_path() == "torch-graph"
    obs, noise = _inputs(5, seed=7)
    chunk = frozen.predict_action_chunk(obs, noise=noise, nfe=nfe)
    assert (graph.predict_action_chunk(obs, noise=noise) - chunk).abs().max().item() <= TOLERANCE


def test_mode_denoiser_exports_with_its_fused_experts(exported: Exported) -> None:
    policy, path = exported("mode", 3)
    graph = OnnxPolicy(path)
    for batch in (1, 5):
        obs, noise = _inputs(batch, seed=10 + batch)
        diff = graph.predict_action_chunk(obs, noise=noise) - policy.predict_action_chunk(obs, noise=noise)
        assert diff.abs().max().item() <= TOLERANCE


def test_goal_inputs_and_guidance_are_inside_the_graph(exported: Exported) -> None:
    policy, path = exported("mlp", 2, goal=True)
    graph = OnnxPolicy(path)
    assert graph.inputs == ("obs", "noise", "task", "goal")
    obs, noise = _inputs(5, seed=3)
    goal = {
        "task": torch.tensor([0, 1, 2, 1, 0]),
        "goal": torch.randn(5, 2, generator=torch.Generator().manual_seed(4)),
    }
    chunk = graph.predict_action_chunk(obs, noise=noise, goal=goal)
    assert (chunk - policy.predict_action_chunk(obs, noise=noise, goal=goal)).abs().max().item() <= TOLERANCE
    other = graph.predict_action_chunk(obs, noise=noise, goal={**goal, "task": torch.tensor([2, 2, 0, 0, 1])})
    assert (other - chunk).abs().max().item() > 1e-3  # the task input matters
    with pytest.raises(ScorePolicyError, match=r"'task' must be 5 ids in 0\.\.2"):
        graph.predict_action_chunk(obs, noise=noise, goal={**goal, "task": torch.tensor([0, 1, 3, 1, 0])})
    with pytest.raises(ScorePolicyError, match="field 'goal' missing"):
        graph.predict_action_chunk(obs, noise=noise, goal={"task": goal["task"]})


def test_metadata_describes_the_graph(exported: Exported) -> None:
    policy, path = exported("mlp", 3)
    meta = read_metadata(path)
    assert set(meta) == set(METADATA_KEYS)
    model = onnx.load(str(path))
    assert meta["opset"] == next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert [i.name for i in model.graph.input] == ["obs", "noise"] == meta["inputs"]
    assert [o.name for o in model.graph.output] == ["actions"]
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")  # a dynamic batch axis
    assert (meta["nfe"], meta["sampler"], meta["n_action_steps"]) == (3, "ddim", 2)
    assert meta["obs_shape"] == [2, 3] and meta["action_shape"] == [4, 2]
    assert meta["run"] is None and meta["run_sha256"] is None  # exported from a policy object
    assert meta["torch_version"] == torch.__version__
    assert OnnxPolicy(path).cfg == policy.cfg  # the config round-trips (with the exported NFE)
    assert np.allclose(meta["normalization"]["obs"]["min"], policy.obs_min.numpy())
    assert np.allclose(meta["normalization"]["action"]["max"], policy.action_max.numpy())


def test_stochastic_sampler_is_refused_with_the_flag_and_a_choice(tmp_path: Path) -> None:
    out = tmp_path / "x.onnx"
    with pytest.raises(ScorePolicyError, match=r"--sampler euler_ancestral: .*ddim") as info:
        export_onnx(tiny_policy(), 3, out, sampler="euler_ancestral")
    assert "\n" not in str(info.value)
    assert not out.exists()


def test_other_policy_families_are_refused(tmp_path: Path) -> None:
    mse = build_policy(random_policy().cfg.__class__(**{**vars(random_policy().cfg), "kind": "mse-bc"}))
    with pytest.raises(ScorePolicyError, match="cannot be exported"):
        export_onnx(mse, 1, tmp_path / "x.onnx")


def test_export_leaves_the_callers_policy_unchanged(tmp_path: Path) -> None:
    policy = random_policy()
    before = json.dumps(policy.cfg.used_dict())
    with pytest.raises(ScorePolicyError):
        export_onnx(policy, 2, tmp_path / "x.onnx", sampler="euler_ancestral")
    assert json.dumps(policy.cfg.used_dict()) == before and policy.inference_path() == "torch-eager"
