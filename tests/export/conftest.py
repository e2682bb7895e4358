"""Fixtures of the export tests: tiny score policies with every weight drawn at random (a fresh policy's
output layers are zero, which would make any two graphs agree), and their exported graphs, made once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import tiny_config, toy_windows

from scorepolicy.data.windows import min_max_stats
from scorepolicy.export import export_onnx
from scorepolicy.models import MoDEConfig
from scorepolicy.policies import ScorePolicy

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def random_policy(denoiser: str = "mlp", *, goal: bool = False, seed: int = 0) -> ScorePolicy:
    """A tiny score policy (obs 3, action 2, T_o 2, T_p 4) with seeded random weights; `goal` adds task ids
    (3) and goal vectors (2) with guidance λ = 1.5, given explicitly (not inside the observation)."""
    cfg = tiny_config("mlp" if denoiser == "mode" else denoiser)
    if denoiser == "mode":
        cfg.denoiser = "mode"
        cfg.mode = MoDEConfig(d_model=32, n_layers=1, n_heads=2, n_experts=4, top_k=2, action_group=2)
    stats = {"obs": min_max_stats(toy_windows().obs), "action": min_max_stats(toy_windows().actions)}
    if goal:
        cfg.goal.n_tasks, cfg.goal.goal_dim, cfg.goal.guidance = 3, 2, 1.5
        stats["goal"] = {"min": np.array([-1.0, 0.0]), "max": np.array([1.0, 4.0])}
    torch.manual_seed(seed)
    policy = ScorePolicy(cfg)
    policy.set_normalization(stats)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.denoiser.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator))
        if policy.goal_encoder is not None:
            for p in policy.goal_encoder.parameters():
                p.add_(0.2 * torch.randn(p.shape, generator=generator))
    return policy.eval()


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[ScorePolicy, Path]]:
    """exported(denoiser, nfe, goal=False) -> (the policy, its graph), each exported once per session."""
    cache: dict[tuple[str, int, bool], tuple[ScorePolicy, Path]] = {}
    folder = tmp_path_factory.mktemp("graphs")

    def make(denoiser: str, nfe: int, goal: bool = False) -> tuple[ScorePolicy, Path]:
        key = (denoiser, nfe, goal)
        if key not in cache:
            torch.set_num_threads(1)
            policy = random_policy(denoiser, goal=goal)
            path = folder / f"{denoiser}-{nfe}{'-goal' if goal else ''}.onnx"
            export_onnx(policy, nfe, path)
            policy.cfg.diffusion.nfe = nfe
            cache[key] = (policy, path)
        return cache[key]

    return make
