"""Residual RL (issue 12, part 3): zero residual = base, bounded correction, learning on a biased reach
task, save/load and exact resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from tests.rl.conftest import rl_context

from scorepolicy.core.episodes import Episodes
from scorepolicy.core.task import Task
from scorepolicy.data.windows import WindowDataset, min_max_stats
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.evaluate import EvalConfig, evaluate
from scorepolicy.files import load_tensors
from scorepolicy.models import MLPConfig
from scorepolicy.policies import ChunkPolicy, PolicyConfig, ScorePolicy
from scorepolicy.rl.common import RLContext
from scorepolicy.rl.residual import ResidualConfig, ResidualPolicy
from scorepolicy.rl.residual_env import ResidualVecEnv, apply_residual
from scorepolicy.rl.residual_train import train_residual

pytest.importorskip("stable_baselines3")

RADIUS = 0.04
"""Success: within this distance of the goal."""
BIAS = np.array([0.06, 0.0], dtype=np.float32)
"""The demonstrator aims this far beside the goal: its clone misses the success radius."""
GAIN = 2.0
"""Demonstrator: a = clip(GAIN · (aim − pos), −1, 1); the point moves 0.1·a per step."""
MAX_STEPS = 40


class ReachEnv(gym.Env[np.ndarray, np.ndarray]):
    """A point in the plane steered towards a seeded goal; observation [pos, goal]; reward −distance."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-2.0, 2.0, (4,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.pos = np.zeros(2)
        self.goal = np.zeros(2)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1.0, 1.0, 2)
        self.goal = self.np_random.uniform(-0.5, 0.5, 2)
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.pos = self.pos + 0.1 * np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        distance = float(np.linalg.norm(self.pos - self.goal))
        success = distance < RADIUS
        return self._obs(), -distance, success, False, {"is_success": success, "distance": distance}

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.goal]).astype(np.float32)


def _no_data(episodes: Episodes) -> np.ndarray:
    raise NotImplementedError


REACH = Task(
    name="reach",
    obs_dim=4,
    action_dim=2,
    max_steps=MAX_STEPS,
    default_seed=0,
    make_env=lambda render_mode: ReachEnv(),
    dataset_obs=_no_data,
    dataset_actions=_no_data,
    episode_metrics=lambda infos: {"success": float(any(i.get("is_success", False) for i in infos))},
    aggregate_metrics=lambda records: {},
)


def biased_demos(n: int = 60, seed: int = 0) -> WindowDataset:
    """Demonstrations of the biased controller (seeds never used for training RL or evaluation)."""
    rng = np.random.default_rng(seed)
    obs, act, ends = [], [], []
    for _ in range(n):
        pos, goal = rng.uniform(-1, 1, 2), rng.uniform(-0.5, 0.5, 2)
        for _ in range(MAX_STEPS):
            a = np.clip(GAIN * (goal + BIAS - pos), -1.0, 1.0)
            obs.append(np.concatenate([pos, goal]))
            act.append(a)
            pos = pos + 0.1 * a
        ends.append(len(obs))
    return WindowDataset(np.array(obs), np.array(act), np.array(ends), n_obs_steps=2, horizon=4)


@pytest.fixture(scope="module")
def base() -> ScorePolicy:
    """The biased base, trained once for this module."""
    return train_base()


def train_base(steps: int = 300) -> ScorePolicy:
    """A tiny score policy cloned from the biased demonstrations (trained in seconds)."""
    torch.set_num_threads(1)
    data = biased_demos()
    torch.manual_seed(0)
    cfg = PolicyConfig(
        obs_dim=4, action_dim=2, n_obs_steps=2, horizon=4, n_action_steps=2,
        mlp=MLPConfig(width=64, n_blocks=2, cond_dim=32, sigma_dim=16),
    )  # fmt: skip
    policy = ScorePolicy(cfg)
    policy.set_normalization({"obs": min_max_stats(data.obs), "action": min_max_stats(data.actions)})
    opt = torch.optim.Adam(policy.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        batch = data.batch(rng.integers(0, len(data), 128))
        loss, _ = policy.compute_loss({k: torch.as_tensor(v) for k, v in batch.items()}, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return policy.eval()


def context(base: Any, run_dir: Path, env_steps: int, **kw: Any) -> RLContext:
    """The shared test context on the planar reach task with its shaped reward."""
    return rl_context(base, REACH, run_dir, env_steps, **{"reward": "shaped", **kw})


def success_rate(policy: Any, episodes: int = 60) -> float:
    """Success on evaluation seeds 0.. (never used for training), through the project's evaluation."""
    cfg = EvalConfig(episodes=episodes, seed=0, n_envs=episodes, progress=False)
    return float(evaluate(policy, REACH, cfg)["success_rate"])


def random_actor(policy: ResidualPolicy, seed: int) -> None:
    """Large random actor weights (the residual saturates at ±1 in places)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.actor.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 2.0)


def rollout_actions(
    policy: Any, seed: int, steps: int = 12, batch: int = 5, per_row: bool = False
) -> list[np.ndarray]:
    """Actions of `policy` driving `batch` reach envs (seeds seed..) for `steps` steps; sampling noise
    from one stream (`reset(seed=)`) or one per row (`reset(seeds=)`)."""
    envs = [ReachEnv() for _ in range(batch)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    if per_row:
        policy.reset(seeds=[seed + i for i in range(batch)])
    else:
        policy.reset(seed=seed)
    actions = []
    for _ in range(steps):
        a = policy.select_action(obs)
        actions.append(a.copy())
        obs = np.stack([e.step(a[i])[0] for i, e in enumerate(envs)])
    return actions


def test_zero_residual_is_exactly_the_base(base: ScorePolicy) -> None:
    base.optimize_for_inference()
    improved = ResidualPolicy(base, ResidualConfig())
    for per_row in (False, True):
        ours, theirs = (
            rollout_actions(improved, 7, per_row=per_row),
            rollout_actions(base, 7, per_row=per_row),
        )
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
    obs = torch.as_tensor(np.stack([ReachEnv().reset(seed=s)[0] for s in range(3)]))
    hist = obs[:, None].repeat(1, 2, 1)
    noise = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(
        improved.predict_action_chunk(hist, noise=noise), base.predict_action_chunk(hist, noise=noise)
    )


def test_residual_stays_within_alpha(base: ScorePolicy) -> None:
    alpha = 0.1
    improved = ResidualPolicy(base, ResidualConfig(alpha=alpha))
    random_actor(improved, 3)
    ours, theirs = rollout_actions(improved, 11, steps=2), rollout_actions(base, 11, steps=2)
    moved = False
    for a, b in zip(ours, theirs):  # the first chunk's actions: both see the same observations
        delta = base.normalize("action", torch.as_tensor(a)) - base.normalize("action", torch.as_tensor(b))
        assert float(delta.abs().max()) <= alpha + 1e-5
        moved = moved or float(delta.abs().max()) > alpha / 2
    assert moved  # the random actor does move the actions
    raw = base.unnormalize("action", torch.tensor([[0.97, -0.5], [-1.0, 1.0]]))
    out = base.normalize("action", apply_residual(base, raw, torch.ones(2, 2), alpha))
    assert float(out.max()) <= 1.0 + 1e-6  # never pushed outside the data's action range


def test_env_features_and_batched_base_calls(base: ScorePolicy, monkeypatch: pytest.MonkeyPatch) -> None:
    env = ResidualVecEnv(base, REACH, 4, alpha=0.1, reward="shaped", train_seed=50, noise_seed=0)
    calls: list[int] = []
    original = base.predict_action_chunk

    def counting(obs: torch.Tensor, **kw: Any) -> torch.Tensor:
        calls.append(obs.shape[0])
        return original(obs, **kw)

    monkeypatch.setattr(base, "predict_action_chunk", counting)
    obs = env.reset()
    assert obs.shape == (4, env.observation_space.shape[0]) and calls == [4]  # type: ignore[index]
    for _ in range(6):
        env.step(np.zeros((4, 2), np.float32))
    assert calls == [4, 4, 4, 4]  # one batched call per chunk boundary, never one per env
    assert env.next_seed == 54


def test_residual_rl_raises_success_on_biased_task(base: ScorePolicy, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = ResidualConfig(
        actor_hidden=[64, 64], critic_hidden=[64, 64], batch_size=128, utd=0.5, learning_starts=800,
        critic_warmup=200, actor_lr=1e-3, critic_lr=1e-3, buffer_size=20_000,
    )  # fmt: skip
    before = success_rate(base.optimize_for_inference())
    improved = train_residual(context(base, tmp_path, 3_000), cfg, False)
    after = success_rate(improved.optimize_for_inference())
    assert before <= 0.3  # the clone inherits the demonstrator's bias
    assert after >= before + 0.4


def test_wall_clock_budget_ends_the_run_after_the_wave_that_used_it(
    base: ScorePolicy, tmp_path: Path
) -> None:
    # --max-minutes used to end a residual run only at the next curve point (minutes late with the
    # default --eval-every); now the wave that uses up the time is the last, evaluated and saved.
    cfg = ResidualConfig(actor_hidden=[32], critic_hidden=[32], batch_size=32, learning_starts=64)
    steps: list[int] = []

    def record(policy: Any, step: int) -> dict[str, Any]:
        steps.append(step)
        return {}

    ctx = context(
        base,
        tmp_path,
        10**6,
        n_envs=4,
        max_minutes=1e-9,
        evaluate=record,
    )
    train_residual(ctx, cfg, False)
    assert steps == [4]
    assert isinstance(ChunkPolicy.from_pretrained(tmp_path), ResidualPolicy)


def test_save_load_gives_identical_actions(base: ScorePolicy, tmp_path: Path) -> None:
    improved = ResidualPolicy(base, ResidualConfig(actor_hidden=[32]), reward="shaped")
    random_actor(improved, 5)
    improved.save_pretrained(tmp_path / "run")
    loaded = ChunkPolicy.from_pretrained(tmp_path / "run")  # the generic loader finds the kind
    assert isinstance(loaded, ResidualPolicy)
    assert loaded.reward == "shaped" and loaded.method.actor_hidden == [32]
    improved.optimize_for_inference()  # both frozen the same way (the traced base graph)
    a, b = rollout_actions(improved, 3), rollout_actions(loaded.optimize_for_inference(), 3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    weights = tmp_path / "run" / "base" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ScorePolicyError, match="base_sha256"):
        ResidualPolicy.from_pretrained(tmp_path / "run")


def test_resume_after_kill_equals_uninterrupted(base: ScorePolicy, tmp_path: Path) -> None:
    cfg = ResidualConfig(
        actor_hidden=[32], critic_hidden=[32], batch_size=32, utd=0.5, learning_starts=64,
        critic_warmup=8, buffer_size=1_000,
    )  # fmt: skip
    common = {"n_envs": 4, "checkpoint_every": 96}
    train_residual(context(base, tmp_path / "a", 288, **common), cfg, False)
    train_residual(context(base, tmp_path / "b", 192, **common), cfg, False)  # "killed" after 192 steps
    np.random.seed(123)  # a fresh process would not share the RNG states either
    torch.manual_seed(123)
    train_residual(context(base, tmp_path / "b", 288, **common), cfg, True)
    for name in ("model.safetensors", "rl_state/agent.safetensors"):
        a, b = load_tensors(tmp_path / "a" / name), load_tensors(tmp_path / "b" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_improve_residual_writes_a_run_that_eval_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bimodal_base: ScorePolicy, reach_task: Task
) -> None:
    from tests.rl.conftest import save_base_run

    import scorepolicy.api.improvement as improve_module
    from scorepolicy import api

    real = improve_module.get_task
    monkeypatch.setattr(
        improve_module, "get_task", lambda name: reach_task if name == "reach" else real(name)
    )
    run = save_base_run(bimodal_base, tmp_path / "base")
    small = ResidualConfig(actor_hidden=[32], critic_hidden=[32], batch_size=32, learning_starts=32)
    job = api.ImproveJob(
        run=run, out=tmp_path / "res", method="residual", env_steps=160, eval_every=80, eval_episodes=20,
        n_envs=4, checkpoint_every=80, progress=False, residual=small,
    )  # fmt: skip
    result = api.improve(job)
    assert [int(r["env_step"]) for r in result["curve"]] == [0, 80, 160]
    meta = json.loads((tmp_path / "res" / "config.json").read_text())
    assert meta["kind"] == "residual" and meta["method"]["actor_hidden"] == [32]
    policy = api.load_policy(tmp_path / "res", nfe=3)  # what `scorepolicy eval` / `latency` load
    assert isinstance(policy, ResidualPolicy) and policy.base.cfg.diffusion.nfe == 3
    timed = api.measure_latency(policy.optimize_for_inference(), repeats=5)  # `scorepolicy latency RUN`
    assert timed["ms_per_chunk"] > 0 and timed["nfe"] == 3
    cfg = EvalConfig(episodes=20, seed=0, n_envs=20, progress=False)
    assert evaluate(policy, reach_task, cfg)["success_rate"] == float(result["curve"][-1]["success_rate"])
    import scorepolicy.api.evaluation as eval_module

    monkeypatch.setattr(
        eval_module, "get_task", lambda name, *a: reach_task if name == "reach" else real(name, *a)
    )
    via_api = api.evaluate_run(tmp_path / "res", cfg, nfe=3)  # what `scorepolicy eval RUN` runs
    assert via_api["success_rate"] == float(result["curve"][-1]["success_rate"])
    assert via_api["path"] == policy.base.inference_path()
    state = json.loads((tmp_path / "res" / "rl_state" / "state.json").read_text())
    assert state["progress"]["env_steps"] == 160
    resumed = api.improve(dataclasses.replace(job, env_steps=240, resume=True))
    assert [int(r["env_step"]) for r in resumed["curve"]] == [0, 80, 160, 240]
