"""Device plumbing, checked on this CPU-only machine with torch's `meta` device: a policy moved there must
train and sample with every batch-sized tensor made on it. A tensor pinned to the CPU in a hot path (made
without device=) fails loudly when it meets a meta tensor, exactly as it would meet a CUDA tensor; a
TorchFunctionMode also checks every generator a random op is given lives where that op's tensor does
(a CUDA op needs a CUDA generator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.conftest import tiny_config, toy_windows
from torch.overrides import TorchFunctionMode

from scorepolicy.data.windows import min_max_stats
from scorepolicy.devices import resolve_device
from scorepolicy.diffusion.random import RowGenerators, ShardedGenerator, generator_device, make_generator
from scorepolicy.errors import ScorePolicyError
from scorepolicy.policies import ChunkPolicy, build_policy
from scorepolicy.training import TrainConfig
from scorepolicy.training.loop import LossModule, ema_update, make_state, train_step

META = torch.device("meta")


class GeneratorWatch(TorchFunctionMode):
    """Records each random op's (generator device, tensor device) and (name, ndim) of every CPU tensor with
    more than one element that any torch function returns."""

    def __init__(self) -> None:
        super().__init__()
        self.random: list[tuple[torch.device, torch.device]] = []
        self.cpu_outputs: list[tuple[str, int]] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        gen = kwargs.get("generator")
        if isinstance(gen, torch.Generator) and isinstance(out, torch.Tensor):
            self.random.append((gen.device, out.device))
        if isinstance(out, torch.Tensor) and out.device.type == "cpu" and out.numel() > 1:
            self.cpu_outputs.append((getattr(func, "__name__", str(func)), out.ndim))
        return out


def _policy(kind: str = "score", denoiser: str = "mlp", **diffusion: Any) -> ChunkPolicy:
    cfg = tiny_config(denoiser)
    cfg.kind = kind  # type: ignore[assignment]
    for key, value in diffusion.items():
        setattr(cfg.diffusion, key, value)
    if kind == "ddpm":
        cfg.ddpm.inference_steps = 5
    torch.manual_seed(0)
    policy = build_policy(cfg)
    data = toy_windows()
    policy.set_normalization({"obs": min_max_stats(data.obs), "action": min_max_stats(data.actions)})
    return policy


def _batch(device: torch.device, b: int = 8) -> dict[str, torch.Tensor]:
    data = toy_windows()
    return {k: torch.from_numpy(v).to(device) for k, v in data.batch(np.arange(b)).items()}


@pytest.mark.parametrize(
    ("kind", "denoiser"), [("score", "mlp"), ("score", "transformer"), ("ddpm", "mlp"), ("mse-bc", "mlp")]
)
def test_a_training_step_runs_on_the_model_device(kind: str, denoiser: str) -> None:
    policy = _policy(kind, denoiser).to(META)
    assert policy.generator.device == torch.device("cpu")  # meta has no generator: numbers are made on it
    cfg = TrainConfig(steps=2, batch_size=8, progress=False, tensorboard=False)
    state = make_state(policy, cfg)
    assert next(state.ema.parameters()).device == META and state.noise_gen.device == generator_device(META)
    watch = GeneratorWatch()
    with watch:
        batch = toy_windows().batch(np.arange(8))
        loss, grad_norm = train_step(
            LossModule(policy), state, batch, ShardedGenerator(state.noise_gen, 1, 2), cfg
        )
        ema_update(state.ema, policy, 0.9)
    assert loss.device == META and grad_norm.device == META
    assert all(p.grad is None or p.grad.device == META for p in policy.parameters())
    moments = state.optimizer.state[next(policy.parameters())]
    assert moments["exp_avg"].device == META and moments["exp_avg_sq"].device == META
    assert bool(watch.random) == (kind != "mse-bc")  # MSE-BC draws nothing (no observation noise)
    assert all(g == generator_device(t) for g, t in watch.random)
    assert (
        watch.cpu_outputs == []
    )  # the host batch goes straight to the device; nothing else is made on the CPU


SAMPLERS = ["euler", "heun", "ddim", "dpmpp_2m", "euler_ancestral"]


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("per_row", [False, True])
def test_sampling_runs_on_the_model_device(sampler: str, per_row: bool) -> None:
    policy = _policy(sampler=sampler, nfe=3).to(META)
    if per_row:
        policy.reset(seeds=[1, 2, 3])
    obs = torch.zeros(3, 2, 3)  # observations arrive on the CPU and are moved
    watch = GeneratorWatch()
    with watch:
        actions = policy.predict_action_chunk(obs)
    assert actions.device == META and actions.shape == (3, 4, 2)
    assert all(g == generator_device(t) for g, t in watch.random)
    checks = [("isfinite", 3), ("__invert__", 3)]  # the NaN check of the caller's CPU observations
    assert watch.cpu_outputs[:2] == checks
    # after it, only vectors: the σ schedule and the per-row σ views that steer the sampler's loop, kept on
    # the CPU on purpose (no device sync); anything batch-shaped (noise, condition, chunk) is ≥ 2-D
    assert all(ndim == 1 for _, ndim in watch.cpu_outputs[2:]), watch.cpu_outputs


@pytest.mark.parametrize("kind", ["ddpm", "mse-bc"])
def test_baseline_sampling_runs_on_the_model_device(kind: str) -> None:
    policy = _policy(kind).to(META)
    actions = policy.predict_action_chunk(torch.zeros(2, 2, 3))
    assert actions.device == META and actions.shape == (2, 4, 2)


def test_generators_follow_the_policy_and_keep_their_seeds() -> None:
    policy = _policy()
    policy.reset(seeds=[5, 6])
    expected = torch.stack([torch.randn(4, 2, generator=make_generator(s)) for s in (5, 6)])
    assert torch.equal(policy.initial_noise(2), expected)
    policy.reset(seeds=[5, 6])
    policy.to(META)  # per-row streams move with the policy, seeds kept
    rows = policy.noise_source
    assert isinstance(rows, RowGenerators) and rows.seeds == [5, 6] and rows.device == META
    assert policy.initial_noise(2).device == META
    assert generator_device("cuda:1") == torch.device("cuda:1") and generator_device(META).type == "cpu"


def test_sharded_noise_is_the_global_batchs_rows() -> None:
    whole = torch.randn(8, 3, generator=make_generator(7))
    parts = [ShardedGenerator(make_generator(7), r, 2) for r in range(2)]
    from scorepolicy.diffusion.random import randn

    assert torch.equal(torch.cat([randn((4, 3), p) for p in parts]), whole)


def test_checkpoints_load_on_the_cpu_then_move(tmp_path: Path) -> None:
    policy = _policy()
    policy.save_pretrained(tmp_path)
    moved = ChunkPolicy.from_pretrained(tmp_path, device=META)
    assert moved.device == META and moved.generator.device.type == "cpu"
    assert ChunkPolicy.from_pretrained(tmp_path).device.type == "cpu"


def test_device_names() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ScorePolicyError, match="--device cuda: torch sees no CUDA device"):
            resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where torch sees no CUDA device")
def test_cli_device_cuda_without_a_gpu_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scorepolicy.cli import main

    args = [
        "train",
        "--task",
        "obstacles",
        "--dataset.n-demos",
        "4",
        "--train.steps",
        "1",
        "--device",
        "cuda",
    ]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    assert "--device cuda: torch sees no CUDA device here" in capsys.readouterr().err
