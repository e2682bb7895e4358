"""`nfe` in results is the number of denoiser calls a chunk really makes (counted), for every policy family."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from tests.evaluation.conftest import stochastic_policy

from scorepolicy import api
from scorepolicy.evaluation import EvalConfig
from scorepolicy.files import atomic_write_json
from scorepolicy.policies import ChunkPolicy
from scorepolicy.policies.baselines import denoiser_calls
from scorepolicy.policies.config import DDPMConfig


def _counted_calls(policy: ChunkPolicy) -> int:
    calls = []
    handle = policy.denoiser.register_forward_hook(lambda *_: calls.append(1))
    try:
        policy.reset(seed=0)
        policy.predict_action_chunk(torch.zeros(3, policy.cfg.n_obs_steps, policy.cfg.obs_dim))
    finally:
        handle.remove()
    return len(calls)


@pytest.mark.parametrize(
    ("kind", "sampler", "nfe", "calls"),
    [
        ("score", "euler", 3, 3),
        ("score", "heun", 3, 3),
        ("score", "heun", 4, 3),  # Heun spends an odd number: 2 per step, 1 for the last step to σ = 0
        ("score", "dpmpp_2m", 5, 5),
        ("score", "euler_ancestral", 2, 2),
        ("ddpm", None, 100, 100),
        ("ddpm", None, 10, 10),
        ("mse-bc", None, 3, 1),
    ],
)
def test_denoiser_calls_match_the_calls_made(kind: str, sampler: str | None, nfe: int, calls: int) -> None:
    policy = stochastic_policy(kind)
    cfg = policy.cfg
    if sampler is not None:
        cfg.diffusion = dataclasses.replace(cfg.diffusion, sampler=sampler, nfe=nfe)  # type: ignore[arg-type]
    cfg.ddpm = DDPMConfig(inference_steps=nfe)
    assert _counted_calls(policy) == calls
    assert denoiser_calls(policy) == calls


@pytest.mark.parametrize(("kind", "calls"), [("ddpm", 100), ("mse-bc", 1)])
def test_baselines_report_their_calls_in_eval_and_latency_results(
    tmp_path: Path, kind: str, calls: int
) -> None:
    policy = stochastic_policy(kind, obs_dim=2, action_dim=2)
    policy.cfg.ddpm = DDPMConfig()  # Diffusion Policy's 100 steps
    policy.save_pretrained(tmp_path)
    atomic_write_json(tmp_path / "train_config.json", {"task": "obstacles"})
    result = api.evaluate_run(tmp_path, EvalConfig(episodes=1, n_envs=1, max_steps=4, progress=False))
    assert result["nfe"] == calls and result["nfe"] != policy.cfg.diffusion.nfe
    latency = api.measure_latency(api.load_policy(tmp_path), repeats=2)
    assert latency["nfe"] == calls
    assert latency["sampler"] == ("ddpm" if kind == "ddpm" else None)
