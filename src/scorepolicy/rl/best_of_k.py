"""Best-of-K policy iteration on a frozen score policy (`train_best_of_k`); registered as method 'best-of-k'.

Each iteration (1) collects `episodes_per_iteration` training episodes with the current policy — at every
decision the base proposes K chunks from K fresh noises and the critic picks one (iteration 0: the base's
own single sample) — (2) computes every decision's discounted Monte-Carlo return, and (3) fits the critic
ensemble Q(s, executed actions, t) to the returns of all decisions kept so far. Picking the best of K
samples under Q^π is one step of policy improvement, so the iterations are approximate policy iteration
in the base's noise space; the base's weights never change and iteration 0 is exactly the base.

A checkpoint (run_dir/rl_state, replaced atomically, after every iteration) holds the collected
decisions, the critic, the env seed counter and the RNG states; episodes in flight when an iteration
ends are discarded (at most n_envs partial episodes per iteration), so a resumed run continues exactly
as an uninterrupted one, losing at most the iteration that was running when it was killed.
"""

from __future__ import annotations

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
from scorepolicy.rl.best_of_k_config import BestOfKConfig
from scorepolicy.rl.best_of_k_policy import BestOfKPolicy, QEnsemble, critic_input_dim
from scorepolicy.rl.common import BASE_DIR, STATE_DIR, RLContext, rng_state, set_rng_state
from scorepolicy.rl.dsrl_env import NoiseVecEnv

FIELDS = ("inputs", "returns")


def discounted_returns(rewards: list[float], gamma: float) -> list[float]:
    """G_t = r_t + γ G_{t+1} for one episode's decisions (0 after its last)."""
    out, g = [], 0.0
    for r in reversed(rewards):
        g = r + gamma * g
        out.append(g)
    return out[::-1]


def collect(
    policy: BestOfKPolicy, env: NoiseVecEnv, episodes: int, gen: torch.Generator, stop: Any
) -> tuple[dict[str, np.ndarray], float, int]:
    """Run fresh episodes with the policy until `episodes` have ended or `stop(env_steps)`; returns the
    decisions of the ended episodes (critic inputs, returns), their success rate and how many ended."""
    env.reset()
    k = policy.bok.candidates if policy.fitted else 1
    running: list[list[tuple[torch.Tensor, float]]] = [[] for _ in range(env.num_envs)]
    inputs: list[torch.Tensor] = []
    returns: list[float] = []
    successes: list[bool] = []
    while len(successes) < episodes and not stop(env.env_steps):
        hist, t = env.history(), env.steps_taken()
        shape = (env.num_envs, k, *env.chunk_shape)
        best, chunks = policy.choose(hist, torch.randn(shape, generator=gen), t)
        chosen = chunks[torch.arange(env.num_envs), best]
        x = policy.critic_input(policy.features(hist), policy.normalize("action", chosen), t)
        _, rewards, dones, infos = env.step_chunks(chosen)
        for i in range(env.num_envs):
            running[i].append((x[i], float(rewards[i])))
            if dones[i]:
                xs, rs = zip(*running[i])
                inputs.extend(xs)
                returns.extend(discounted_returns(list(rs), policy.bok.gamma))
                successes.append(bool(infos[i]["is_success"]))
                running[i] = []
    data = {
        "inputs": torch.stack(inputs).numpy()
        if inputs
        else np.zeros((0, critic_input_dim(policy.cfg, policy.bok))),
        "returns": np.asarray(returns, np.float32),
    }
    return data, float(np.mean(successes)) if successes else 0.0, len(successes)


def fit_critic(policy: BestOfKPolicy, data: list[dict[str, np.ndarray]], seed: int) -> dict[str, float]:
    """Fit a fresh critic ensemble to the returns (standardised) of the kept decisions; each member sees
    its own random batches; 10% of the decisions are held out for the reported error."""
    bok = policy.bok
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(np.concatenate([d["inputs"] for d in data]), dtype=torch.float32)
    g = torch.as_tensor(np.concatenate([d["returns"] for d in data]), dtype=torch.float32)
    y = (g - g.mean()) / (g.std() + 1e-6)
    with torch.random.fork_rng(devices=[]):  # a seeded init that leaves the global RNG alone
        torch.manual_seed(seed)
        critic = QEnsemble(x.shape[1], bok.ensemble, bok.hidden, bok.layers)
    perm = torch.randperm(len(x), generator=gen)
    held, train = perm[: len(x) // 10], perm[len(x) // 10 :]
    steps = max(1, bok.epochs * len(train) // bok.batch_size)
    opt = torch.optim.AdamW(critic.parameters(), lr=bok.lr, weight_decay=bok.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss = torch.zeros(())
    for _ in range(steps):
        idx = train[torch.randint(len(train), (bok.ensemble, bok.batch_size), generator=gen)]
        pred = torch.stack([m(x[idx[j]])[:, 0] for j, m in enumerate(critic.members)])
        loss = ((pred - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        held_mse = float(((critic(x[held]).mean(1) - y[held]) ** 2).mean()) if len(held) else float("nan")
    policy.set_critic(critic.state_dict())
    return {
        "decisions": len(x),
        "fit_steps": steps,
        "train_mse": float(loss.detach()),
        "held_out_mse": held_mse,
    }


# ---------------------------------------------------------------- checkpoints (nothing pickled)
def save_checkpoint(
    path: Path, policy: BestOfKPolicy, data: list[dict[str, np.ndarray]], meta: dict[str, Any]
) -> None:
    """Write the resumable state (a directory, replaced atomically)."""
    with atomic_directory(path) as tmp:
        tmp.mkdir(parents=True)
        atomic_save_tensors(tmp / "critic.safetensors", policy.critic.state_dict())
        for i, d in enumerate(data):
            for field in FIELDS:
                np.save(tmp / f"iter{i}_{field}.npy", d[field], allow_pickle=False)
        state = {
            **meta,
            "progress": {"env_steps": meta["env_steps"]},
            "fitted": policy.fitted,
            "n_data": len(data),
        }
        atomic_write_json(tmp / "state.json", {**state, "rng": rng_state()})


def load_checkpoint(path: Path, policy: BestOfKPolicy) -> tuple[list[dict[str, np.ndarray]], dict[str, Any]]:
    """Restore what `save_checkpoint` wrote: (kept decisions per iteration, loop state)."""
    meta = read_json(path / "state.json")
    if meta["fitted"]:
        policy.set_critic(load_tensors(path / "critic.safetensors"))
    data = [
        {field: np.load(path / f"iter{i}_{field}.npy", allow_pickle=False) for field in FIELDS}
        for i in range(int(meta["n_data"]))
    ]
    set_rng_state(meta.pop("rng"))
    keys = ("iteration", "next_seed", "env_steps", "history")
    return data, {k: meta[k] for k in keys}


# ---------------------------------------------------------------- training
def train_best_of_k(ctx: RLContext, cfg: BestOfKConfig, resume: bool) -> BestOfKPolicy:
    """Best-of-K policy iteration on ctx (budget ctx.env_steps); saves and returns the improved policy."""
    assert isinstance(ctx.base, ScorePolicy)
    policy = BestOfKPolicy.from_base(ctx.base, cfg, ctx.reward, ctx.task.max_steps)
    policy.optimize_for_inference()
    env = NoiseVecEnv(policy, ctx.task, ctx.n_envs, ctx.train_seed, ctx.reward, 1.0)
    state_dir = ctx.run_dir / STATE_DIR
    data: list[dict[str, np.ndarray]] = []
    meta: dict[str, Any] = {"iteration": 0, "next_seed": ctx.train_seed, "env_steps": 0, "history": []}
    if resume and (state_dir / "state.json").is_file():
        data, meta = load_checkpoint(state_dir, policy)
    started = time.monotonic()
    bar = tqdm(
        total=ctx.env_steps,
        initial=meta["env_steps"],
        unit="step",
        disable=not ctx.progress,
        desc="best-of-k",
    )
    try:
        while not ctx.out_of_budget(meta["env_steps"], started) or not policy.fitted:
            it = int(meta["iteration"])
            env.next_seed, env.env_steps = int(meta["next_seed"]), int(meta["env_steps"])
            gen = torch.Generator().manual_seed(ctx.seed * 100_003 + it)
            new, train_success, ended = collect(
                policy, env, cfg.episodes_per_iteration, gen, lambda n: ctx.out_of_budget(n, started)
            )
            bar.update(env.env_steps - meta["env_steps"])
            data = [*data, new][-(cfg.keep_iterations or len(data) + 1) :]
            fit = fit_critic(policy, data, ctx.seed * 100_003 + it)
            meta = {
                "iteration": it + 1,
                "next_seed": env.next_seed,
                "env_steps": env.env_steps,
                "history": [
                    *meta["history"],
                    {
                        "iteration": it,
                        "env_steps": env.env_steps,
                        "episodes": ended,
                        "train_success": train_success,
                        **fit,
                    },
                ],
            }
            bar.set_postfix(
                iteration=it, train_success=f"{train_success:.2f}", held_out_mse=f"{fit['held_out_mse']:.3f}"
            )
            ctx.evaluate(policy, env.env_steps)
            save_checkpoint(state_dir, policy, data, meta)
    finally:
        bar.close()
        env.close()
    if (ctx.run_dir / BASE_DIR / "model.safetensors").is_file():
        policy.save_learned(ctx.run_dir)  # the driver's verified copy of the base run is kept
    else:
        policy.save_pretrained(ctx.run_dir)
    return policy


METHOD = (BestOfKConfig, train_best_of_k)
POLICY_CLASS = BestOfKPolicy
