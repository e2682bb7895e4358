"""One config class per policy family, registered by kind; config.json holds only what a family uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.conftest import tiny_config

from scorepolicy.errors import ScorePolicyError
from scorepolicy.policies import (
    ChunkPolicy,
    DDPMPolicyConfig,
    MSEBCPolicyConfig,
    PolicyConfig,
    ScorePolicyConfig,
    build_policy,
    policy_class,
    register_policy_module,
)

SHARED = {
    "kind",
    "obs_dim",
    "action_dim",
    "n_obs_steps",
    "horizon",
    "n_action_steps",
    "denoiser",
    "goal",
    "seed",
}


@pytest.mark.parametrize(
    ("kind", "denoiser", "sections"),
    [
        ("score", "mlp", {"mlp", "diffusion"}),
        ("score", "transformer", {"transformer", "diffusion"}),
        ("score", "unet1d", {"unet1d", "diffusion"}),
        ("ddpm", "unet1d", {"unet1d", "ddpm"}),
        ("mse-bc", "mlp", {"mlp"}),
        ("ddpm", "mlp", {"mlp", "ddpm"}),
    ],
)
def test_config_json_holds_only_what_the_family_uses(
    kind: str, denoiser: str, sections: set[str], tmp_path: Path
) -> None:
    cfg = tiny_config(denoiser)
    cfg.kind = kind  # type: ignore[assignment]
    policy = build_policy(cfg)
    assert type(policy.cfg) is policy_class(kind).config_class
    policy.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())["policy"]
    assert set(saved) == SHARED | {"obs_noise"} | sections
    loaded = ChunkPolicy.from_pretrained(tmp_path)
    assert type(loaded) is type(policy) and loaded.cfg == policy.cfg


def test_command_line_config_becomes_the_family_config() -> None:
    cfg = tiny_config()
    cfg.kind = "ddpm"
    policy = build_policy(cfg)
    assert isinstance(policy.cfg, DDPMPolicyConfig) and policy.cfg.kind == "ddpm"
    assert policy.cfg.mlp is cfg.mlp  # the used sections are shared with the command-line config
    assert policy.cfg.diffusion == PolicyConfig().diffusion  # unused: defaults


def test_each_family_validates_its_own_sections() -> None:
    bad = tiny_config()
    bad.diffusion.sigma_min = 0.0
    with pytest.raises(ScorePolicyError, match=r"diffusion\.sigma-min"):
        ScorePolicyConfig(**vars(bad)).validate()
    MSEBCPolicyConfig(**{**vars(bad), "kind": "mse-bc"}).validate()  # MSE-BC has no diffusion section
    bad.ddpm.inference_steps = 0
    with pytest.raises(ScorePolicyError, match=r"ddpm\.inference-steps"):
        DDPMPolicyConfig(**{**vars(bad), "kind": "ddpm"}).validate()
    with pytest.raises(ScorePolicyError, match=r"^config: horizon: must be ≥ 1"):
        policy_class("score")(PolicyConfig(obs_dim=3, action_dim=2, horizon=0))


def test_chunk_policy_is_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        ChunkPolicy(tiny_config())  # type: ignore[abstract]


def test_a_family_defined_elsewhere_loads_by_kind_through_a_lazy_import(tmp_path: Path) -> None:
    code = f"""
import sys, torch
from scorepolicy.policies import ChunkPolicy, register_policy_module
register_policy_module("test-constant", "tests.policies.external_family")
assert "tests.policies.external_family" not in sys.modules
from tests.policies.external_family import ConstantPolicy
from tests.conftest import tiny_config
p = ConstantPolicy(tiny_config())
p.save_pretrained({str(tmp_path)!r})
"""
    root = Path(__file__).parent.parent.parent
    env = {"PYTHONPATH": f"{root / 'src'}:{root}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)
    assert json.loads((tmp_path / "config.json").read_text())["policy"]["kind"] == "test-constant"
    assert "tests.policies.external_family" not in sys.modules
    register_policy_module("test-constant", "tests.policies.external_family")
    loaded = ChunkPolicy.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "ConstantPolicy" and "tests.policies.external_family" in sys.modules
    assert torch.equal(loaded.predict_action_chunk(torch.zeros(1, 2, 3)), torch.zeros(1, 4, 2))
