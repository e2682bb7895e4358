"""The DSRL agents on stable-baselines3's SAC: plain SAC in noise space, and DSRL-NA (noise aliasing).

Both explore with their actor from the first step (no uniform warm-up: uniform noise is far from the
base's), and the actor starts at μ = 0, σ = 1/b, so its noise b·tanh(u), u ~ N(0, 1/b²), is close to
the base's own N(0, I) noise before any update (METHODS.md: a freshly initialised actor starts far below
the base). Measured on Push-T (15k-step snapshot, 50 validation episodes): base 32% / 0.785 score;
b = 1.5 with σ = 1: 14% / 0.742; with σ = 1/b: 30% / 0.788.

DSRL-NA (METHODS.md §1, variant B): the replay buffer holds the executed chunk a (normalised), not w.
  Q^A(s, a):  target r + γ(1 − d)[min_i Q̄^A_i(s', π_dp(s', w')) − α log π(w'|s')],  w' ~ π(·|s')
  actor:      E[α log π(w|s) − min_i Q^W_i(s, w)],  w ~ π(·|s);  α learned with target entropy 0
  Q^W(s, w):  distilled: ½ MSE(Q^W_i(s, w), Q^A_i(s, π_dp(s, w))) on fresh w ~ N(0, I) (online Q^A)
  Q^A target: Polyak τ every gradient step; Q^W has no target network.
SB3 provides the actor, Q^W (its critic), Q^A (a second `ContinuousCritic`), the buffer and
`polyak_update`; the update above is the only new code.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.utils import polyak_update
from torch import nn

from scorepolicy.rl.dsrl_config import DSRLConfig
from scorepolicy.rl.dsrl_env import NoiseVecEnv
from scorepolicy.rl.dsrl_policy import start_at_base


class DSRLAgent(SAC):
    """SB3 SAC whose action is the chunk noise; with variant 'na' the DSRL-NA update (module doc)."""

    def setup_dsrl(self, env: NoiseVecEnv, cfg: DSRLConfig) -> None:
        """Start the actor at the base's noise and, for 'na', add the action critic and chunk buffer."""
        self.dsrl, self.noise_env = cfg, env
        start_at_base(self.actor.mu, self.actor.log_std, cfg.noise_bound)
        for group in self.actor.optimizer.param_groups:
            group["lr"] = cfg.lr if cfg.actor_lr is None else cfg.actor_lr
        if cfg.variant != "na":
            return
        obs_space, chunk_space = env.observation_space, env.chunk_space
        self.replay_buffer = ReplayBuffer(
            cfg.buffer_size,
            obs_space,
            chunk_space,
            device="cpu",
            n_envs=env.num_envs,
            handle_timeout_termination=True,
        )
        arch = [cfg.hidden] * cfg.layers
        self.qa = ContinuousCritic(
            obs_space,
            chunk_space,
            arch,
            FlattenExtractor(obs_space),
            env.features.dim,
            nn.ReLU,
        )
        self.qa_target = deepcopy(self.qa).requires_grad_(False)
        self.qa_optimizer = torch.optim.Adam(self.qa.parameters(), lr=cfg.lr)

    def _update_learning_rate(self, optimizers: Any) -> None:
        """Learning rates are constant and set per network at setup (SB3 would reset them to one value)."""

    # ---------------------------------------------------------------- acting
    def _sample_action(
        self, learning_starts: int, action_noise: Any = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Always the actor's sample (also during warm-up; see module doc)."""
        unscaled, _ = self.predict(self._last_obs, deterministic=False)  # type: ignore[arg-type]
        scaled = self.policy.scale_action(unscaled)
        return self.policy.unscale_action(scaled), scaled

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: Any,
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """NA stores the executed (normalised) chunk instead of the noise."""
        if self.dsrl.variant == "na":
            buffer_action = np.stack([info["chunk"] for info in infos])
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)

    # ---------------------------------------------------------------- DSRL-NA update
    def decode(self, obs: torch.Tensor, scaled_noise: torch.Tensor) -> torch.Tensor:
        """Normalised chunks (B, H·d_a) the base makes from features and noise/b."""
        env = self.noise_env
        hist = env.features.decode(obs)
        w = (scaled_noise * self.dsrl.noise_bound).reshape(obs.shape[0], *env.chunk_shape)
        chunk = env.base.predict_action_chunk(hist, noise=w)
        return env.base.normalize("action", chunk).reshape(obs.shape[0], -1).clone()

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """SB3's SAC update, or the DSRL-NA update for variant 'na'."""
        if self.dsrl.variant != "na":
            super().train(gradient_steps, batch_size)
            return
        self.policy.set_training_mode(True)
        for _ in range(gradient_steps):
            self._na_step(batch_size)
            for _ in range(self.dsrl.distill_steps):
                self._distill_step(batch_size)
            self._n_updates += 1

    def _alpha(self, log_prob: torch.Tensor) -> torch.Tensor:
        """Current α (detached) after one temperature step towards the target entropy."""
        assert self.log_ent_coef is not None and self.ent_coef_optimizer is not None
        alpha = torch.exp(self.log_ent_coef.detach())
        loss = -(self.log_ent_coef * (log_prob + float(self.target_entropy)).detach()).mean()
        self.ent_coef_optimizer.zero_grad()
        loss.backward()
        self.ent_coef_optimizer.step()
        return alpha

    def _na_step(self, batch_size: int) -> None:
        data = self.replay_buffer.sample(batch_size)  # type: ignore[union-attr]
        w_pi, log_prob = self.actor.action_log_prob(data.observations)
        log_prob = log_prob.reshape(-1, 1)
        warm = self._n_updates < self.dsrl.critic_warmup
        alpha = torch.exp(self.log_ent_coef.detach()) if warm else self._alpha(log_prob)  # type: ignore[union-attr]
        with torch.no_grad():
            w_next, log_next = self.actor.action_log_prob(data.next_observations)
            a_next = self.decode(data.next_observations, w_next)
            q_next = torch.cat(self.qa_target(data.next_observations, a_next), dim=1).min(
                dim=1, keepdim=True
            )[0]
            q_next = q_next - alpha * log_next.reshape(-1, 1)
            target = data.rewards + (1 - data.dones) * self.gamma * q_next
        qa_loss = 0.5 * sum(F.mse_loss(q, target) for q in self.qa(data.observations, data.actions))
        self.qa_optimizer.zero_grad()
        qa_loss.backward()  # type: ignore[union-attr]
        self.qa_optimizer.step()
        if not warm:
            q_pi = torch.cat(self.critic(data.observations, w_pi), dim=1).min(dim=1, keepdim=True)[0]
            actor_loss = (alpha * log_prob - q_pi).mean()
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self.actor.optimizer.step()
        polyak_update(self.qa.parameters(), self.qa_target.parameters(), self.tau)
        self.logger.record("train/qa_loss", float(qa_loss.detach()))  # type: ignore[union-attr]
        self.logger.record("train/ent_coef", float(alpha))

    def _distill_step(self, batch_size: int) -> None:
        obs = self.replay_buffer.sample(batch_size).observations  # type: ignore[union-attr]
        w = torch.randn(obs.shape[0], int(np.prod(self.noise_env.chunk_shape))) / self.dsrl.noise_bound
        with torch.no_grad():
            targets = self.qa(obs, self.decode(obs, w))
        loss = 0.5 * sum(F.mse_loss(q, t) for q, t in zip(self.critic(obs, w), targets))
        self.critic.optimizer.zero_grad()
        loss.backward()  # type: ignore[union-attr]
        self.critic.optimizer.step()


def make_agent(env: NoiseVecEnv, cfg: DSRLConfig, seed: int) -> DSRLAgent:
    """A DSRL agent on `env` with the config's networks and rates."""
    grad_steps = max(1, round(cfg.utd * env.num_envs))
    agent = DSRLAgent(
        "MlpPolicy",
        env,
        learning_rate=cfg.lr,
        buffer_size=cfg.buffer_size,
        learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size,
        tau=cfg.tau,
        gamma=cfg.gamma,
        train_freq=1,
        gradient_steps=grad_steps,
        ent_coef=f"auto_{cfg.init_ent_coef}",
        target_entropy=cfg.target_entropy,
        policy_kwargs={"net_arch": [cfg.hidden] * cfg.layers},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    agent.setup_dsrl(env, cfg)
    return agent
