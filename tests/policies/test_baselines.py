"""Baselines on the same backbone: MSE-BC and DDPM train, sample correctly, save/load exactly, and train
from the command line with --policy."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import tiny_config, toy_windows

from scorepolicy.cli import main
from scorepolicy.data.windows import min_max_stats
from scorepolicy.errors import ScorePolicyError
from scorepolicy.policies import ChunkPolicy, PolicyConfig, build_policy
from scorepolicy.policies.baselines import (
    DDPMPolicy,
    MSEBCPolicy,
    ddpm_alphas_cumprod,
    ddpm_sample,
    ddpm_timesteps,
    denoiser_calls,
)
from scorepolicy.policies.config import DDPMConfig


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: tiny networks gain nothing from two, and lose a lot on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _policy(kind: str, **ddpm: object) -> ChunkPolicy:
    cfg = dataclasses.replace(tiny_config(), kind=kind)  # type: ignore[arg-type]
    cfg.ddpm = DDPMConfig(**ddpm)  # type: ignore[arg-type]
    torch.manual_seed(0)
    policy = build_policy(cfg)
    data = toy_windows()
    policy.set_normalization({"obs": min_max_stats(data.obs), "action": min_max_stats(data.actions)})
    return policy


@pytest.mark.parametrize("kind", ["mse-bc", "ddpm"])
def test_baseline_training_lowers_the_loss(kind: str) -> None:
    policy = _policy(kind)
    data = toy_windows()
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    eval_batch = {k: torch.from_numpy(v) for k, v in data.batch(np.arange(len(data))).items()}

    def full_loss() -> float:
        with torch.no_grad():
            return float(policy.compute_loss(eval_batch, torch.Generator().manual_seed(1))[0])

    before = full_loss()
    for _ in range(80):
        batch = {k: torch.from_numpy(v) for k, v in data.batch(rng.integers(0, len(data), 32)).items()}
        loss, info = policy.compute_loss(batch, gen)
        assert info["loss"] == pytest.approx(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert full_loss() < 0.5 * before
    chunk = policy.eval().predict_action_chunk(eval_batch["obs"][:5])
    assert chunk.shape == (5, 4, 2) and torch.isfinite(chunk).all()


def test_cosine_schedule_matches_its_definition() -> None:
    abar = ddpm_alphas_cumprod(DDPMConfig())
    assert abar.shape == (100,) and bool((abar[1:] < abar[:-1]).all())
    f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert float(abar[49]) == pytest.approx(f(50 / 100) / f(0.0), rel=1e-9)
    assert ddpm_timesteps(100, 10) == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    assert ddpm_timesteps(100, 100)[:3] == [99, 98, 97]


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_sampler_recovers_a_gaussian_with_the_exact_noise_predictor(sampler: str) -> None:
    # data N(μ, s²): E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ) is the optimal ε-prediction. With it,
    # the sampler's only error is the discretisation, which vanishes as the steps get finer.
    mu, s = 0.3, 0.2

    def run(train_steps: int, steps: int) -> torch.Tensor:
        abar = ddpm_alphas_cumprod(DDPMConfig(train_steps=train_steps))

        def eps(x: torch.Tensor, t: int) -> torch.Tensor:
            a = float(abar[t])
            return math.sqrt(1 - a) * (x - math.sqrt(a) * mu) / (a * s * s + 1 - a)

        gen = torch.Generator().manual_seed(0)
        noise = torch.randn(10000, dtype=torch.float64, generator=gen)
        steps_list = ddpm_timesteps(train_steps, steps)
        return ddpm_sample(eps, noise, abar, steps_list, sampler=sampler, clip=False, generator=gen)

    fine = run(1000, 1000)
    assert float(fine.mean()) == pytest.approx(mu, abs=0.01)
    assert float(fine.std()) == pytest.approx(s, rel=0.03)
    errors = [abs(float(run(100, n).std()) - s) for n in (10, 25, 100)]
    assert errors[0] > errors[1] > errors[2] < 0.02  # coarser sampling, larger error


@pytest.mark.parametrize("kind", ["mse-bc", "ddpm"])
def test_save_load_round_trip_is_exact(kind: str, tmp_path: Path) -> None:
    policy = _policy(kind, inference_steps=10, sampler="ddim")
    policy.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["policy"]["kind"] == kind
    loaded = ChunkPolicy.from_pretrained(tmp_path)
    assert type(loaded) is type(policy) and loaded.cfg.used_dict() == policy.cfg.used_dict()
    for k, v in policy.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    obs = torch.from_numpy(toy_windows().batch(np.arange(6))["obs"])
    policy.eval().reset(seed=3)
    loaded.reset(seed=3)
    assert torch.equal(policy.predict_action_chunk(obs), loaded.predict_action_chunk(obs))
    loaded.reset(seed=4)
    eager = loaded.predict_action_chunk(obs)
    loaded.optimize_for_inference().reset(seed=4)
    assert torch.allclose(loaded.predict_action_chunk(obs), eager, atol=1e-4)  # frozen TorchScript path


def test_denoiser_calls_and_config_errors() -> None:
    assert denoiser_calls(_policy("mse-bc")) == 1
    assert denoiser_calls(_policy("ddpm", inference_steps=16)) == 16
    assert isinstance(_policy("mse-bc"), MSEBCPolicy) and isinstance(_policy("ddpm"), DDPMPolicy)
    with pytest.raises(ScorePolicyError, match=r"ddpm\.inference-steps"):
        _policy("ddpm", inference_steps=101)
    with pytest.raises(ScorePolicyError, match="valid kinds: score, mse-bc, ddpm"):
        build_policy(PolicyConfig(kind="gmm", obs_dim=2, action_dim=2))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["mse-bc", "ddpm"])
def test_train_from_the_command_line(kind: str, tmp_path: Path) -> None:
    out = tmp_path / kind
    args = ["train", "--task", "obstacles", "--policy", kind, "--out", str(out), "--dataset.n-demos", "4"]
    args += [
        "--train.steps",
        "3",
        "--train.no-progress",
        "--train.no-tensorboard",
        "--policy.mlp.width",
        "16",
    ]
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["policy"]["kind"] == kind
    assert main(["eval", str(out), "--episodes", "2", "--n-envs", "2", "--nfe", "2"]) == 0


# ---------------------------------------------------------------------------------------------------------
# Reference: Diffusion Policy's DDPM is diffusers' DDPMScheduler with these settings (its low-dim configs)

DP_SCHEDULER = {
    "num_train_timesteps": 100,
    "beta_schedule": "squaredcos_cap_v2",
    "variance_type": "fixed_small",
    "clip_sample": True,
    "prediction_type": "epsilon",
}


def _diffusers() -> object:
    """diffusers' schedulers module, or a skip naming the extra that installs it."""
    return pytest.importorskip(
        "diffusers",
        reason="diffusers not installed (the reference test's optional dependency: pip install diffusers)",
    )


def test_ddpm_schedule_equals_diffusers() -> None:
    scheduler = _diffusers().DDPMScheduler(**DP_SCHEDULER)  # type: ignore[attr-defined]
    ours = ddpm_alphas_cumprod(DDPMConfig())
    torch.testing.assert_close(ours.float(), scheduler.alphas_cumprod, rtol=1e-6, atol=1e-7)
    betas = 1 - ours / torch.cat([ours.new_ones(1), ours[:-1]])
    torch.testing.assert_close(betas.float(), scheduler.betas, rtol=1e-5, atol=1e-7)
    for n in (100, 16, 10, 3):
        scheduler.set_timesteps(n)
        assert scheduler.timesteps.tolist() == ddpm_timesteps(100, n)


@pytest.mark.parametrize("inference_steps", [100, 10, 4])
def test_ddpm_step_equals_diffusers(inference_steps: int) -> None:
    """Each x_{t−1} from the same x_t, ε̂ and noise as diffusers' DDPMScheduler.step, at every step."""
    scheduler = _diffusers().DDPMScheduler(**DP_SCHEDULER)  # type: ignore[attr-defined]
    scheduler.set_timesteps(inference_steps)
    abar = ddpm_alphas_cumprod(DDPMConfig())
    steps = ddpm_timesteps(100, inference_steps)
    seen: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    gen = torch.Generator().manual_seed(0)

    def eps(x: torch.Tensor, t: int) -> torch.Tensor:
        # a fixed nonlinear ε̂ that pushes x̂0 outside [-1, 1] at large t, so clipping is exercised
        e = torch.tanh(3 * x) * (1.5 - t / 100) + 0.2 * torch.sin(x * t)
        seen.append((t, x.clone(), e.clone(), gen.get_state()))  # the state the step's noise comes from
        return e

    x_t = 1.7 * torch.randn(64, 4, 2, generator=torch.Generator().manual_seed(1))
    out = ddpm_sample(eps, x_t, abar, steps, sampler="ddpm", clip=True, generator=gen)
    assert [t for t, *_ in seen] == steps
    nexts = [x for _, x, _, _ in seen[1:]] + [out]
    clipped = 0
    for (t, x, e, state), ours_next in zip(seen, nexts):
        ref = scheduler.step(e, t, x, generator=torch.Generator().set_state(state)).prev_sample
        torch.testing.assert_close(ours_next, ref, rtol=1e-5, atol=1e-5)
        a = float(abar[t])
        clipped += int(((x - math.sqrt(1 - a) * e) / math.sqrt(a)).abs().max() > 1)
    assert clipped > 0


def test_ddim_step_equals_diffusers_with_the_clipped_model_output() -> None:
    """DDIM (η = 0) moves along the ε consistent with the clipped x̂0: diffusers' DDIMScheduler with
    use_clipped_model_output=True (its default, False, keeps the network's unclipped ε̂)."""
    scheduler = _diffusers().DDIMScheduler(  # type: ignore[attr-defined]
        num_train_timesteps=100,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=True,
        set_alpha_to_one=True,
        steps_offset=0,
        prediction_type="epsilon",
    )
    scheduler.set_timesteps(10)
    abar = ddpm_alphas_cumprod(DDPMConfig())
    steps = ddpm_timesteps(100, 10)
    assert scheduler.timesteps.tolist() == steps
    seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def eps(x: torch.Tensor, t: int) -> torch.Tensor:
        e = torch.tanh(3 * x) * (1.5 - t / 100) + 0.2 * torch.sin(x * t)
        seen.append((t, x.clone(), e.clone()))
        return e

    x_t = 1.7 * torch.randn(64, 4, 2, generator=torch.Generator().manual_seed(1))
    out = ddpm_sample(eps, x_t, abar, steps, sampler="ddim", clip=True)
    nexts = [x for _, x, _ in seen[1:]] + [out]
    for (t, x, e), ours_next in zip(seen, nexts):
        ref = scheduler.step(e, t, x, use_clipped_model_output=True).prev_sample
        torch.testing.assert_close(ours_next, ref, rtol=1e-5, atol=1e-5)
