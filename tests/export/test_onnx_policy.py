"""OnnxPolicy behind the CLI: `scorepolicy export` a tiny obstacle-task run, then `eval` and `latency` on the
.onnx file give the run's own episode records and latency JSON keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from tests.export.conftest import random_policy

from scorepolicy import api
from scorepolicy.api.evaluation import torchscript_deprecations
from scorepolicy.cli import main
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig
from scorepolicy.export import read_metadata
from scorepolicy.export.runtime import OnnxPolicy


@pytest.fixture(scope="module")
def run_and_graph(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny obstacle-task run (60 steps) and its NFE-3 graph, written by the CLI."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    run, graph = root / "run", root / "run.onnx"
    train = [
        "train",
        "--task",
        "obstacles",
        "--out",
        str(run),
        "--dataset.n-demos",
        "8",
        "--train.steps",
        "60",
    ]
    train += [
        "--train.warmup-steps",
        "5",
        "--train.no-progress",
        "--train.no-tensorboard",
        "--policy.mlp.width",
        "32",
    ]
    assert main(train) == 0
    assert main(["export", str(run), "--format", "onnx", "--nfe", "3", "--out", str(graph)]) == 0
    return run, graph


def test_metadata_names_the_run_it_came_from(run_and_graph: tuple[Path, Path]) -> None:
    run, graph = run_and_graph
    meta = read_metadata(graph)
    assert meta["run"] == str(run) and meta["task"] == "obstacles"
    assert meta["run_sha256"] == hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()
    saved = json.loads((run / "config.json").read_text())
    assert meta["policy"]["policy"] == {
        **saved["policy"],
        "diffusion": {**saved["policy"]["diffusion"], "nfe": 3},
    }


def test_initial_noise_follows_the_torch_policys_streams(run_and_graph: tuple[Path, Path]) -> None:
    run, graph = run_and_graph
    torch_policy, onnx_policy = api.load_policy(run), OnnxPolicy(graph)
    for policy in (torch_policy, onnx_policy):
        policy.reset(seeds=[3, 4, 5])
    for _ in range(2):  # the streams advance alike
        assert torch.equal(torch_policy.initial_noise(3), onnx_policy.initial_noise(3))
    with pytest.raises(ScorePolicyError, match=r"reset\(seeds=\.\.\.\) gave 3 rows"):
        onnx_policy.initial_noise(2)


def test_eval_of_the_graph_gives_the_runs_records(run_and_graph: tuple[Path, Path]) -> None:
    run, graph = run_and_graph
    cfg = EvalConfig(episodes=6, seed=500, n_envs=4, progress=False, keep_trajectories=True)
    torch_result = api.evaluate_run(run, cfg)
    onnx_result = api.evaluate_run(graph, cfg)
    assert (torch_result["path"], onnx_result["path"]) == ("torch-graph", "onnx")
    assert onnx_result["success_rate"] == torch_result["success_rate"]
    for a, b in zip(torch_result["episodes"], onnx_result["episodes"]):
        assert (a["seed"], a["success"], a["length"], a.get("behaviour")) == (
            b["seed"],
            b["success"],
            b["length"],
            b.get("behaviour"),
        )
        assert np.abs(np.asarray(a["observations"]) - np.asarray(b["observations"])).max() < 1e-4
    lengths = {e["length"] for e in torch_result["episodes"]}
    assert len(lengths) > 1  # the episodes differ: the comparison is not of six copies of one rollout


def test_eval_refuses_settings_the_graph_was_not_exported_with(
    run_and_graph: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, graph = run_and_graph
    assert main(["eval", str(graph), "--episodes", "1", "--nfe", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--nfe 5" in err and "exported with 3" in err and "\n" not in err


def test_latency_json_has_the_runs_keys_and_the_path(
    run_and_graph: tuple[Path, Path], tmp_path: Path
) -> None:
    run, graph = run_and_graph
    for source, name in ((run, "torch.json"), (graph, "onnx.json")):
        assert main(["latency", str(source), "--repeats", "5", "--json", str(tmp_path / name)]) == 0
    torch_json = json.loads((tmp_path / "torch.json").read_text())
    onnx_json = json.loads((tmp_path / "onnx.json").read_text())
    assert set(onnx_json) == set(torch_json)
    assert {"path", "torch_version", "onnxruntime_version", "deprecated_apis"} <= set(onnx_json)
    assert (torch_json["path"], onnx_json["path"]) == ("torch-graph", "onnx")
    assert (
        onnx_json["onnxruntime_version"] == onnxruntime.__version__
        and torch_json["onnxruntime_version"] is None
    )
    assert torch_json["torch_version"] == onnx_json["torch_version"] == torch.__version__
    assert (
        torch_json["deprecated_apis"] == list(torchscript_deprecations())
        and onnx_json["deprecated_apis"] == []
    )
    assert (onnx_json["nfe"], onnx_json["sampler"], onnx_json["denoiser"]) == (3, "ddim", "mlp")


def test_export_refuses_to_overwrite_without_the_flag(
    run_and_graph: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, graph = run_and_graph
    before = graph.read_bytes()
    assert main(["export", str(run), "--nfe", "1", "--out", str(graph)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(run), "--out", str(run / "checkpoints" / "x.onnx")]) == 2
    assert "one of the files of the run" in capsys.readouterr().err  # never among the run's own files
    assert (
        main(
            [
                "export",
                str(run),
                "--nfe",
                "3",
                "--sampler",
                "euler_ancestral",
                "--out",
                str(graph),
                "--overwrite",
            ]
        )
        == 2
    )
    assert "--sampler euler_ancestral" in capsys.readouterr().err
    assert graph.read_bytes() == before


def test_torchscript_deprecations_are_read_from_torchs_warnings() -> None:
    found = torchscript_deprecations()
    assert all(name.startswith("torch.jit.") for name in found)
    policy = random_policy().optimize_for_inference()
    assert api.measure_latency(policy, repeats=3)["deprecated_apis"] == list(found)
