"""The DSRL environment: a stable-baselines3 `VecEnv` whose action is the initial noise of one chunk.

A step decodes the noise of every env with the frozen base's deterministic sampler in one batched call,
executes each chunk's `n_action_steps` actions in its env (stopping early at success, termination or the
task's step limit) and returns the summed per-step reward. The observation is the base's normalised
observation history, flattened. Episodes use env seeds train_seed, train_seed+1, ... in order.

Rewards per step (`reward`): `rl.common.step_reward` (Push-T 'coverage': coverage / 0.95 clipped to 1,
minus 1; 'success': 0 at the successful step, −1 at the others; Meta-World 'shaped': its env reward; a
failure that ends an episode early pays for the steps it had left). Episodes end at success when the
task stops there.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from scorepolicy.core.task import Task
from scorepolicy.evaluation.rollout import info_success
from scorepolicy.policies import ChunkPolicy, ScorePolicy
from scorepolicy.rl.common import step_reward


class ObsFeatures:
    """Raw observation histories (B, T_o, obs_dim) ↔ flat features: the normalised state history and,
    for goal-carrying observations, the last step's raw goal entries."""

    def __init__(self, policy: ChunkPolicy) -> None:
        cfg = policy.cfg
        self.policy, self.t, self.width = policy, cfg.n_obs_steps, cfg.goal.obs_width
        self.state_dim = cfg.obs_dim - self.width
        self.dim = self.t * self.state_dim + self.width

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, T_o, obs_dim) → (B, dim)."""
        state = self.policy.normalize("obs", obs[..., : self.state_dim]).flatten(1)
        return torch.cat([state, obs[:, -1, self.state_dim :]], dim=1) if self.width else state

    def decode(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, dim) → (B, T_o, obs_dim), inverse of `encode`."""
        b = feats.shape[0]
        state = self.policy.unnormalize("obs", feats[:, : self.t * self.state_dim].reshape(b, self.t, -1))
        if not self.width:
            return state
        tail = feats[:, None, self.t * self.state_dim :].expand(b, self.t, self.width)
        return torch.cat([state, tail], dim=2)


class NoiseVecEnv(VecEnv):
    """n_envs task envs whose joint action is the initial noise of one chunk per env (see module doc)."""

    def __init__(
        self, base: ScorePolicy, task: Task, n_envs: int, train_seed: int, reward: str, bound: float
    ) -> None:
        cfg = base.cfg
        step_reward(reward, 0.0, False)  # checks the kind
        self.base, self.task, self.reward_kind = base, task, reward
        self.features = ObsFeatures(base)
        self.chunk_shape = (cfg.horizon, cfg.action_dim)
        obs_space = spaces.Box(-np.inf, np.inf, (self.features.dim,), np.float32)
        act_space = spaces.Box(-bound, bound, (cfg.horizon * cfg.action_dim,), np.float32)
        self.envs = [task.make_env(None) for _ in range(n_envs)]
        super().__init__(n_envs, obs_space, act_space)
        self.chunk_space = spaces.Box(-1.0, 1.0, (cfg.horizon * cfg.action_dim,), np.float32)
        self.next_seed = train_seed
        self.env_steps = 0
        self.episode_seeds = [0] * n_envs
        self.episode_actions: list[list[np.ndarray]] = [[] for _ in range(n_envs)]
        self.histories: list[deque[np.ndarray]] = [deque(maxlen=cfg.n_obs_steps) for _ in range(n_envs)]
        self._actions: np.ndarray | None = None

    # ---------------------------------------------------------------- episodes
    def _start(self, i: int, seed: int, replay: list[np.ndarray] | None = None) -> None:
        """Reset env i with `seed` (and replay the given actions: exact state after a resume)."""
        obs, _ = self.envs[i].reset(seed=seed)
        self.episode_seeds[i], self.episode_actions[i] = seed, []
        self.histories[i].clear()
        self.histories[i].extend([np.asarray(obs, np.float32)] * self.base.cfg.n_obs_steps)
        for action in replay or []:
            obs, *_ = self.envs[i].step(action)
            self.episode_actions[i].append(action)
            self.histories[i].append(np.asarray(obs, np.float32))

    def _new_episode(self, i: int) -> None:
        self._start(i, self.next_seed)
        self.next_seed += 1

    def _observe(self, idx: list[int]) -> np.ndarray:
        hist = torch.as_tensor(np.stack([np.stack(list(self.histories[i])) for i in idx]))
        return self.features.encode(hist).numpy().astype(np.float32)

    def reset(self) -> np.ndarray:
        """Start a fresh episode in every env (next training seeds)."""
        for i in range(self.num_envs):
            self._new_episode(i)
        return self._observe(list(range(self.num_envs)))

    # ---------------------------------------------------------------- stepping
    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.float32)

    def history(self) -> torch.Tensor:
        """Every env's raw observation history (n_envs, T_o, obs_dim)."""
        return torch.as_tensor(np.stack([np.stack(list(h)) for h in self.histories]))

    def steps_taken(self) -> torch.Tensor:
        """Every env's steps so far in its current episode (n_envs,)."""
        return torch.tensor([len(a) for a in self.episode_actions])

    def decode(self, noise: np.ndarray) -> torch.Tensor:
        """Raw action chunks (n_envs, H, d_a) for the noise of every env: one batched base call."""
        hist = self.history()
        w = torch.as_tensor(noise).reshape(self.num_envs, *self.chunk_shape)
        return self.base.predict_action_chunk(hist, noise=w)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        assert self._actions is not None, "step_async first"
        return self.step_chunks(self.decode(self._actions))

    def step_chunks(
        self, chunks: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Execute raw chunks (n_envs, H, d_a) already decoded: the VecEnv step's results."""
        normalized = self.base.normalize("action", chunks).reshape(self.num_envs, -1).numpy()
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        dones = np.zeros(self.num_envs, dtype=bool)
        infos: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            reward, done, info = self._run_chunk(i, chunks[i].numpy())
            rewards[i], dones[i] = reward, done
            info["chunk"] = normalized[i].astype(np.float32)
            infos.append(info)
        obs = self._observe(list(range(self.num_envs)))
        for i in map(int, np.flatnonzero(dones)):
            infos[i]["terminal_observation"] = obs[i].copy()
            self._new_episode(i)
            obs[i] = self._observe([i])[0]
        return obs, rewards, dones, infos

    def _run_chunk(self, i: int, chunk: np.ndarray) -> tuple[float, bool, dict[str, Any]]:
        """Execute one chunk's actions in env i: (summed reward, episode over, info)."""
        total, success, terminated, truncated, steps = 0.0, False, False, False, 0
        for action in chunk[: self.base.cfg.n_action_steps]:
            obs, r, terminated, truncated, info = self.envs[i].step(action)
            self.episode_actions[i].append(action.copy())
            self.histories[i].append(np.asarray(obs, np.float32))
            steps += 1
            success = info_success(info)
            t = len(self.episode_actions[i])
            left = max(0, self.task.max_steps - t) if terminated and not success else 0
            total += step_reward(self.reward_kind, float(r), success, left)
            limit = t >= self.task.max_steps
            if (success and self.task.stop_on_success) or terminated or truncated or limit:
                truncated = truncated or (limit and not (success or terminated))
                break
        self.env_steps += steps
        done = (success and self.task.stop_on_success) or terminated or truncated
        info = {
            "env_steps": steps,
            "is_success": success,
            "TimeLimit.truncated": truncated and not terminated,
        }
        return total, bool(done), info

    # ---------------------------------------------------------------- resume
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON counters, arrays) from which `set_state` rebuilds every env exactly (reset + replay)."""
        meta = {"next_seed": self.next_seed, "env_steps": self.env_steps, "episode_seeds": self.episode_seeds}
        d = self.base.cfg.action_dim
        arrays = {
            f"env{i}_actions": np.asarray(a, np.float32).reshape(-1, d)
            for i, a in enumerate(self.episode_actions)
        }
        return meta, arrays

    def set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Restore what `get_state` returned; returns the current observations."""
        for i in range(self.num_envs):
            self._start(i, int(meta["episode_seeds"][i]), list(arrays[f"env{i}_actions"]))
        self.next_seed, self.env_steps = int(meta["next_seed"]), int(meta["env_steps"])
        return self._observe(list(range(self.num_envs)))

    # ---------------------------------------------------------------- VecEnv boilerplate
    def close(self) -> None:
        for env in self.envs:
            env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.envs[i], attr_name, None) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        for i in self._get_indices(indices):
            setattr(self.envs[i], attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any
    ) -> list[Any]:
        return [
            getattr(self.envs[i], method_name)(*method_args, **method_kwargs)
            for i in self._get_indices(indices)
        ]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> list[Any]:
        return [None for _ in self.envs]
