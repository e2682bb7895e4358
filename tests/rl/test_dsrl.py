"""DSRL: the noise env reproduces the base, training raises success on a biased base, save/load, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.rl.conftest import rl_context

from scorepolicy.core.task import Task
from scorepolicy.policies import ChunkPolicy, ScorePolicy
from scorepolicy.rl.curves import Curve, CurveConfig
from scorepolicy.rl.dsrl import train_dsrl
from scorepolicy.rl.dsrl_config import DSRLConfig
from scorepolicy.rl.dsrl_env import NoiseVecEnv
from scorepolicy.rl.dsrl_policy import DSRLPolicy

SMALL = {
    "hidden": 64,
    "layers": 2,
    "learning_starts": 64,
    "batch_size": 64,
    "utd": 0.5,
    "lr": 1e-3,
    "actor_lr": 1e-3,
    "critic_warmup": 0,
}
"""Networks and rates small enough for a test (seconds on one thread)."""


def test_noise_env_with_the_base_noise_reproduces_the_base_chunk(
    bimodal_base: ScorePolicy, reach_task: Task
) -> None:
    torch.set_num_threads(1)
    base = DSRLPolicy.from_base(bimodal_base, DSRLConfig())
    base.optimize_for_inference()
    env = NoiseVecEnv(base, reach_task, n_envs=3, train_seed=7, reward="success", bound=1.5)
    env.reset()
    hist = torch.as_tensor(np.stack([np.stack(list(h)) for h in env.histories]))
    base.reset(seed=5)
    w = base.initial_noise(3)
    base.reset(seed=5)
    expected = ScorePolicy.predict_action_chunk(base, hist)  # the base drawing its own noise
    assert torch.equal(env.decode(w.reshape(3, -1).numpy()), expected)
    env.step_async(w.reshape(3, -1).numpy())
    _, _, _, infos = env.step_wait()
    for i, info in enumerate(infos):
        assert np.array_equal(info["chunk"], base.normalize("action", expected[i]).reshape(-1).numpy())
    # one chunk of two executed actions per env, one if its first action already succeeded
    assert env.env_steps == sum(info["env_steps"] for info in infos)
    assert all(
        info["env_steps"] == (1 if info["is_success"] and info["env_steps"] < 2 else 2) for info in infos
    )
    env.close()


@pytest.mark.parametrize(("variant", "steps"), [("sac", 3000), ("na", 3000)])
def test_dsrl_raises_success_of_a_biased_base(
    bimodal_base: ScorePolicy, reach_task: Task, tmp_path: Path, variant: str, steps: int
) -> None:
    torch.set_num_threads(1)
    curve = Curve(tmp_path, reach_task, CurveConfig(episodes=100, seed=0, n_envs=50))
    base = ScorePolicy.from_pretrained(_saved(bimodal_base, tmp_path / "base")).optimize_for_inference()
    before = curve.point(base, 0)["success_rate"]
    ctx = rl_context(base, reach_task, tmp_path / "out", steps, evaluate=curve.point, eval_every=steps)
    policy = train_dsrl(ctx, DSRLConfig(variant=variant, **SMALL), False)  # type: ignore[arg-type]
    after = float(curve.rows()[-1]["success_rate"])
    assert before < 0.6
    assert after >= before + 0.2, (before, after)
    loaded = ChunkPolicy.from_pretrained(tmp_path / "out")
    assert isinstance(loaded, DSRLPolicy)
    obs = torch.as_tensor([[[0.3, -0.5]], [[-0.9, 0.8]]], dtype=torch.float32)
    policy.reset(seed=3)
    loaded.reset(seed=3)
    assert torch.equal(
        policy.predict_action_chunk(obs), loaded.optimize_for_inference().predict_action_chunk(obs)
    )


def _saved(policy: ScorePolicy, path: Path) -> Path:
    policy.save_pretrained(path)
    return path


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from scorepolicy.files import load_tensors

    return load_tensors(run_dir / "rl_state" / "networks.safetensors")


@pytest.mark.parametrize("variant", ["na", "sac"])
def test_resume_after_a_stop_equals_an_uninterrupted_run(
    bimodal_base: ScorePolicy, reach_task: Task, tmp_path: Path, variant: str
) -> None:
    torch.set_num_threads(1)
    cfg = DSRLConfig(variant=variant, **SMALL)  # type: ignore[arg-type]
    base = ScorePolicy.from_pretrained(_saved(bimodal_base, tmp_path / "base")).optimize_for_inference()
    whole = train_dsrl(rl_context(base, reach_task, tmp_path / "a", 800, checkpoint_every=300), cfg, False)
    # a run killed after its checkpoint at ~300 steps (what it did after the checkpoint is lost) ...
    train_dsrl(rl_context(base, reach_task, tmp_path / "b", 500, checkpoint_every=300), cfg, False)
    # ... resumed to the full budget
    resumed = train_dsrl(rl_context(base, reach_task, tmp_path / "b", 800, checkpoint_every=300), cfg, True)
    for k, v in whole.actor.state_dict().items():
        assert torch.equal(v, resumed.actor.state_dict()[k]), k
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")  # critics etc. at the last checkpoint
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), k
