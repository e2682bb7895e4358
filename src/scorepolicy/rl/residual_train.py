"""`train_residual`: residual off-policy RL on a frozen base (issue 12, part 3), the driver's entry for
`scorepolicy improve --method residual`."""

from __future__ import annotations

import time
from typing import cast

import torch
from stable_baselines3.common.type_aliases import TrainFreq
from tqdm import tqdm

from scorepolicy.errors import ScorePolicyError
from scorepolicy.rl.common import STATE_DIR, RLContext, step_reward
from scorepolicy.rl.residual import ResidualConfig, ResidualPolicy
from scorepolicy.rl.residual_agent import ResidualTD3, build_agent, load_checkpoint, save_checkpoint
from scorepolicy.rl.residual_env import ResidualVecEnv


def check_residual_config(cfg: ResidualConfig) -> None:
    """One-line errors for residual settings a user can get wrong."""
    if not 0 < cfg.alpha <= 2:
        raise ScorePolicyError("--residual.alpha must be in (0, 2] (normalised action units; 0.1 is typical)")
    if cfg.n_step < 1 or cfg.n_critics < 1 or cfg.batch_size < 1 or cfg.policy_delay < 1:
        raise ScorePolicyError("--residual.n-step, n-critics, batch-size and policy-delay must be ≥ 1")
    if cfg.utd <= 0 or cfg.buffer_size < 1 or cfg.learning_starts < 0 or cfg.critic_warmup < 0:
        raise ScorePolicyError("--residual.utd and buffer-size must be positive, learning-starts ≥ 0")


def improved_from_agent(policy: ResidualPolicy, model: ResidualTD3) -> ResidualPolicy:
    """Copy the agent's actor into the improved policy (same layer layout) and return it."""
    policy.set_actor({f"mu.{k}": v for k, v in model.actor.mu.state_dict().items()})
    return policy.eval()


def train_residual(ctx: RLContext, cfg: ResidualConfig, resume: bool) -> ResidualPolicy:
    """Train a residual actor on ctx.base with TD3 for ctx.env_steps env steps; curve points through
    ctx.evaluate, checkpoints in run_dir/rl_state every ctx.checkpoint_every env steps (all training
    episodes are cut there, so resuming continues exactly; what ran after the last checkpoint is redone);
    returns the improved policy (also saved to ctx.run_dir after every checkpoint and at the end). The
    wall-clock budget ctx.max_minutes ends the run after the wave that uses it up, like the env steps."""
    check_residual_config(cfg)
    step_reward(ctx.reward, 0.0, False)
    n = ctx.n_envs
    ckpt_waves = max(1, ctx.checkpoint_every // n)
    eval_waves = max(1, ctx.eval_every // n)
    env = ResidualVecEnv(
        ctx.base, ctx.task, n, alpha=cfg.alpha, reward=ctx.reward,
        train_seed=ctx.train_seed, noise_seed=ctx.seed, cut_every=ckpt_waves,
    )  # fmt: skip
    model = build_agent(env, cfg, ctx.seed)
    policy = ResidualPolicy(ctx.base, cfg, ctx.reward)
    state_dir = ctx.run_dir / STATE_DIR
    if resume:
        load_checkpoint(model, env, state_dir)
    _, callback = model._setup_learn(ctx.env_steps, None, reset_num_timesteps=not resume)
    bar = tqdm(total=ctx.env_steps, initial=model.num_timesteps, disable=not ctx.progress, unit="step")
    assert model.replay_buffer is not None
    if resume and env.steps_done % eval_waves == 0:  # the driver drops the point taken at the checkpoint
        ctx.evaluate(improved_from_agent(policy, model), model.num_timesteps)
    started = time.monotonic()
    try:
        last = model.num_timesteps >= ctx.env_steps  # the clock is checked after a wave: one runs at least
        while not last:
            model.collect_rollouts(
                env,
                callback,
                cast(TrainFreq, model.train_freq),
                model.replay_buffer,
                model.action_noise,
                model.learning_starts,
            )
            if model.num_timesteps > model.learning_starts:
                model.train(int(model.gradient_steps), model.batch_size)
            bar.update(n)
            wave, last = env.steps_done, ctx.out_of_budget(model.num_timesteps, started)
            if wave % eval_waves == 0 or last:
                with torch.no_grad():
                    ctx.evaluate(improved_from_agent(policy, model), model.num_timesteps)
            if wave % ckpt_waves == 0 or last:
                improved_from_agent(policy, model).save_pretrained(ctx.run_dir)
            if wave % ckpt_waves == 0:  # only at a cut (all episodes restart) can a resume be exact
                save_checkpoint(model, env, state_dir)
    finally:
        bar.close()
        env.close()
    return improved_from_agent(policy, model)
