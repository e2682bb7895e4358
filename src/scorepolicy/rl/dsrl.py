"""DSRL: train a noise actor for a frozen score policy (`train_dsrl`), resumably; registered as method 'dsrl'.

The loop drives stable-baselines3's `collect_rollouts` / `train` itself (one wave of chunk steps, then
the gradient steps) so that it can stop at an env-step budget, evaluate and checkpoint between waves.
A checkpoint (run_dir/rl_state, replaced atomically) holds every network, optimiser, the temperature,
the replay buffer's filled part, the SB3 counters, the global RNG states and each env's episode (its
seed and the actions executed so far, replayed on resume): a resumed run continues exactly as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from scorepolicy.files import (
    atomic_directory,
    atomic_save_tensors,
    atomic_write_json,
    load_tensors,
    read_json,
)
from scorepolicy.policies import ScorePolicy
from scorepolicy.rl.common import BASE_DIR, STATE_DIR, RLContext, rng_state, set_rng_state
from scorepolicy.rl.dsrl_agent import DSRLAgent, make_agent
from scorepolicy.rl.dsrl_config import DSRLConfig
from scorepolicy.rl.dsrl_env import NoiseVecEnv
from scorepolicy.rl.dsrl_policy import DSRLPolicy

BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


# ---------------------------------------------------------------- checkpoints (nothing pickled)
def _modules(agent: DSRLAgent) -> dict[str, torch.nn.Module]:
    mods: dict[str, torch.nn.Module] = {"policy": agent.policy}
    if agent.dsrl.variant == "na":
        mods.update(qa=agent.qa, qa_target=agent.qa_target)
    return mods


def _optimizers(agent: DSRLAgent) -> dict[str, torch.optim.Optimizer]:
    opts = {"actor": agent.actor.optimizer, "critic": agent.critic.optimizer}
    if agent.ent_coef_optimizer is not None:
        opts["ent_coef"] = agent.ent_coef_optimizer
    if agent.dsrl.variant == "na":
        opts["qa"] = agent.qa_optimizer
    return opts


def _optimizer_tensors(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    """An optimiser's state as flat tensors + its param groups (JSON)."""
    sd = opt.state_dict()
    tensors = {
        f"{name}.{idx}.{key}": torch.as_tensor(value)
        for idx, state in sd["state"].items()
        for key, value in state.items()
    }
    return tensors, sd["param_groups"]


def save_checkpoint(path: Path, agent: DSRLAgent, env: NoiseVecEnv, progress: dict[str, Any]) -> None:
    """Write the resumable state to `path` (a directory, replaced atomically)."""
    with atomic_directory(path) as tmp:
        tmp.mkdir(parents=True)
        weights = {f"{n}.{k}": v for n, m in _modules(agent).items() for k, v in m.state_dict().items()}
        if agent.log_ent_coef is not None:
            weights["log_ent_coef"] = agent.log_ent_coef.detach()
        atomic_save_tensors(tmp / "networks.safetensors", weights)
        opt_tensors, groups = {}, {}
        for name, opt in _optimizers(agent).items():
            t, groups[name] = _optimizer_tensors(name, opt)
            opt_tensors.update(t)
        atomic_save_tensors(tmp / "optimizers.safetensors", opt_tensors)
        buf = agent.replay_buffer
        assert buf is not None
        n = buf.buffer_size if buf.full else buf.pos
        for field in BUFFER_FIELDS:
            np.save(tmp / f"buffer_{field}.npy", getattr(buf, field)[:n], allow_pickle=False)
        env_meta, env_arrays = env.get_state()
        for key, arr in env_arrays.items():
            np.save(tmp / f"{key}.npy", arr, allow_pickle=False)
        meta = {
            "progress": progress,
            "optimizer_groups": groups,
            "buffer": {"pos": buf.pos, "full": buf.full},
            "sb3": {
                "num_timesteps": agent.num_timesteps,
                "n_updates": agent._n_updates,
                "episode_num": agent._episode_num,
            },
            "env": env_meta,
            "rng": rng_state(),
        }
        atomic_write_json(tmp / "state.json", meta)


def _load_optimizer(
    opt: torch.optim.Optimizer, name: str, tensors: dict[str, torch.Tensor], groups: Any
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        owner, idx, field = key.split(".", 2)
        if owner == name:
            state.setdefault(int(idx), {})[field] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def load_checkpoint(path: Path, agent: DSRLAgent, env: NoiseVecEnv) -> dict[str, Any]:
    """Restore what `save_checkpoint` wrote; returns the loop's progress counters."""
    meta = read_json(path / "state.json")
    weights = load_tensors(path / "networks.safetensors")
    for name, module in _modules(agent).items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)})
    if agent.log_ent_coef is not None:
        with torch.no_grad():
            agent.log_ent_coef.copy_(weights["log_ent_coef"])
    opt_tensors = load_tensors(path / "optimizers.safetensors")
    for name, opt in _optimizers(agent).items():
        _load_optimizer(opt, name, opt_tensors, meta["optimizer_groups"][name])
    buf = agent.replay_buffer
    assert buf is not None
    for field in BUFFER_FIELDS:
        arr = np.load(path / f"buffer_{field}.npy", allow_pickle=False)
        getattr(buf, field)[: len(arr)] = arr
    buf.pos, buf.full = int(meta["buffer"]["pos"]), bool(meta["buffer"]["full"])
    arrays = {
        f"env{i}_actions": np.load(path / f"env{i}_actions.npy", allow_pickle=False)
        for i in range(env.num_envs)
    }
    agent._last_obs = env.set_state(meta["env"], arrays)
    sb3 = meta["sb3"]
    agent.num_timesteps, agent._n_updates, agent._episode_num = (
        sb3["num_timesteps"],
        sb3["n_updates"],
        sb3["episode_num"],
    )
    set_rng_state(meta["rng"])
    return dict(meta["progress"])


# ---------------------------------------------------------------- training
def sync_actor(policy: DSRLPolicy, agent: DSRLAgent) -> DSRLPolicy:
    """Copy the agent's actor into the improved policy (same layout, see NoiseActor)."""
    state = {k: v for k, v in agent.actor.state_dict().items() if not k.startswith("features_extractor")}
    policy.set_actor(state)
    policy.optimize_for_inference()
    return policy


def train_dsrl(ctx: RLContext, cfg: DSRLConfig, resume: bool) -> DSRLPolicy:
    """Train DSRL on ctx (budget ctx.env_steps); saves and returns the improved policy."""
    assert isinstance(ctx.base, ScorePolicy)
    torch.manual_seed(ctx.seed)
    policy = DSRLPolicy.from_base(ctx.base, cfg, ctx.reward)
    policy.optimize_for_inference()
    env = NoiseVecEnv(policy, ctx.task, ctx.n_envs, ctx.train_seed, ctx.reward, cfg.noise_bound)
    agent = make_agent(env, cfg, ctx.seed)
    state_dir = ctx.run_dir / STATE_DIR
    resumed = resume and (state_dir / "state.json").is_file()
    progress = {"next_eval": ctx.eval_every, "next_checkpoint": ctx.checkpoint_every}
    agent._setup_learn(total_timesteps=1 << 62, reset_num_timesteps=True)
    if resumed:
        progress = load_checkpoint(state_dir, agent, env)
    callback = agent._init_callback(None)
    buffer = agent.replay_buffer
    assert buffer is not None
    started = time.monotonic()
    bar = tqdm(total=ctx.env_steps, initial=env.env_steps, unit="step", disable=not ctx.progress, desc="dsrl")
    try:
        while not ctx.out_of_budget(env.env_steps, started):
            _between_waves(ctx, agent, env, policy, progress, state_dir)
            before = env.env_steps
            freq: Any = agent.train_freq
            agent.collect_rollouts(env, callback, freq, buffer, None, agent.learning_starts)
            if agent.num_timesteps > agent.learning_starts:
                agent.train(gradient_steps=agent.gradient_steps, batch_size=agent.batch_size)
            bar.update(env.env_steps - before)
    finally:
        bar.close()
        env.close()
    sync_actor(policy, agent)
    ctx.evaluate(policy, env.env_steps)
    if (ctx.run_dir / BASE_DIR / "model.safetensors").is_file():
        policy.save_learned(ctx.run_dir)  # the driver's verified copy of the base run is kept
    else:
        policy.save_pretrained(ctx.run_dir)
    return policy


def _between_waves(
    ctx: RLContext,
    agent: DSRLAgent,
    env: NoiseVecEnv,
    policy: DSRLPolicy,
    progress: dict[str, Any],
    state_dir: Path,
) -> None:
    """Checkpoint, then evaluate, when their env-step marks are passed."""
    if env.env_steps >= progress["next_checkpoint"]:
        progress["next_checkpoint"] += ctx.checkpoint_every * (
            1 + (env.env_steps - progress["next_checkpoint"]) // ctx.checkpoint_every
        )
        save_checkpoint(state_dir, agent, env, {**progress, "env_steps": env.env_steps})
    if env.env_steps >= progress["next_eval"]:
        progress["next_eval"] += ctx.eval_every * (
            1 + (env.env_steps - progress["next_eval"]) // ctx.eval_every
        )
        ctx.evaluate(sync_actor(policy, agent), env.env_steps)


def dsrl_method_config(cfg: DSRLConfig) -> dict[str, Any]:
    """The method config as JSON."""
    return dataclasses.asdict(cfg)


METHOD = (DSRLConfig, train_dsrl)
POLICY_CLASS = DSRLPolicy
