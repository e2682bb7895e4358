"""The residual action space as an SB3 `VecEnv`: a frozen chunk policy plays open-loop chunks in n
training envs, and the agent's action r ∈ [-1, 1]^d_a nudges each executed action by α·r in the base's
normalised action space (ResFiT-style per-step residual)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn
from torch import Tensor

from scorepolicy.core.task import Task
from scorepolicy.evaluation.rollout import info_success
from scorepolicy.policies.base import ChunkPolicy
from scorepolicy.rl.common import step_reward
from scorepolicy.rl.residual import apply_residual, base_chunk, feature_dim, residual_features


class BaseChunks:
    """The frozen base acting open loop in B envs: per-env observation history and chunk queue, its
    chunks drawn in one batched call for every env that needs one, with noise from its own generator."""

    def __init__(self, base: ChunkPolicy, n: int, seed: int) -> None:
        self.base, self.n = base, n
        cfg = base.cfg
        self.generator = torch.Generator().manual_seed(seed)
        self.history = torch.zeros(n, cfg.n_obs_steps, cfg.obs_dim)
        self.queue = torch.zeros(n, cfg.n_action_steps, cfg.action_dim)
        self.left = np.zeros(n, dtype=np.int64)  # actions left in each env's queue

    def start(self, i: int, obs: np.ndarray) -> None:
        """Env i began an episode with observation `obs`: history filled with it, queue emptied."""
        self.history[i] = torch.as_tensor(obs, dtype=torch.float32)
        self.left[i] = 0

    def observe(self, i: int, obs: np.ndarray) -> None:
        """Env i stepped to observation `obs`."""
        self.history[i] = torch.roll(self.history[i], -1, dims=0)
        self.history[i, -1] = torch.as_tensor(obs, dtype=torch.float32)

    def refill(self) -> None:
        """One batched base call for the envs whose queue is empty (none if every queue has actions)."""
        need = np.flatnonzero(self.left == 0)
        if need.size == 0:
            return
        cfg = self.base.cfg
        noise = torch.randn((need.size, cfg.horizon, cfg.action_dim), generator=self.generator)
        chunk = base_chunk(self.base, self.history[need], noise)
        self.queue[need] = chunk[:, : cfg.n_action_steps]
        self.left[need] = cfg.n_action_steps

    def current(self) -> Tensor:
        """The raw base action each env executes next (B, d_a)."""
        idx = self.base.cfg.n_action_steps - torch.as_tensor(self.left)
        return self.queue[torch.arange(self.n), idx]

    def pop(self) -> None:
        """Every env used its current action."""
        self.left -= 1


class ResidualVecEnv(VecEnv):
    """n training envs under the frozen base; actions are residuals r ∈ [-1, 1]^d_a.

    Episodes auto-reset with fresh training seeds (train_seed, train_seed + 1, ...) and end on
    success (when the task stops on success) or after task.max_steps (truncation). Every `cut_every`
    steps all episodes are truncated and restarted, so a checkpoint taken then resumes exactly.
    """

    def __init__(
        self,
        base: ChunkPolicy,
        task: Task,
        n_envs: int,
        *,
        alpha: float,
        reward: str,
        train_seed: int,
        noise_seed: int,
        cut_every: int = 0,
    ) -> None:
        step_reward(reward, 0.0, False)  # a bad reward kind fails before any env is built
        self.base, self.task, self.alpha, self.reward = base, task, alpha, reward
        self.envs: list[gym.Env[Any, Any]] = [task.make_env(None) for _ in range(n_envs)]
        dim = feature_dim(base)
        obs_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        act_space = gym.spaces.Box(-1.0, 1.0, (base.cfg.action_dim,), np.float32)
        super().__init__(n_envs, obs_space, act_space)
        self.chunks = BaseChunks(base, n_envs, noise_seed)
        self.next_seed, self.steps_done, self.cut_every = train_seed, 0, cut_every
        self.ep_len = np.zeros(n_envs, dtype=np.int64)
        self.ep_return = np.zeros(n_envs)
        self._actions = np.zeros((n_envs, base.cfg.action_dim), np.float32)
        self._cut = (train_seed, self.chunks.generator.get_state())  # (next seed, noise) at the last cut

    # ------------------------------------------------------------------ state for resume
    def state(self) -> dict[str, Any]:
        """What a checkpoint taken right after a cut needs: `reset()` then restarts the same episodes."""
        return {"next_seed": self._cut[0], "steps_done": self.steps_done}

    def noise_state(self) -> Tensor:
        """The base-noise generator's state before the chunks of the episodes started at the last cut."""
        return self._cut[1]

    def load_state(self, state: dict[str, Any], noise_state: Tensor) -> None:
        """Restore `state()` and `noise_state()`; the next `reset()` continues the saved run."""
        self.next_seed, self.steps_done = int(state["next_seed"]), int(state["steps_done"])
        self.chunks.generator.set_state(noise_state)
        self._cut = (self.next_seed, noise_state)

    # ------------------------------------------------------------------ VecEnv
    def _start(self, i: int) -> np.ndarray:
        obs, _ = self.envs[i].reset(seed=self.next_seed)
        self.next_seed += 1
        self.chunks.start(i, obs)
        self.ep_len[i], self.ep_return[i] = 0, 0.0
        return obs

    def _features(self) -> np.ndarray:
        self.chunks.refill()
        base_n = self.base.normalize("action", self.chunks.current())
        return residual_features(self.base, self.chunks.history, base_n).numpy().astype(np.float32)

    def reset(self) -> np.ndarray:
        """Start fresh episodes in every env (next training seeds)."""
        for i in range(self.num_envs):
            self._start(i)
        return self._features()

    def step_async(self, actions: np.ndarray) -> None:
        """Remember the residuals of the next step."""
        self._actions = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)

    def step_wait(self) -> VecEnvStepReturn:
        """Execute base + α·residual in every env; auto-reset finished episodes."""
        r = torch.as_tensor(np.clip(self._actions, -1.0, 1.0))
        executed = apply_residual(self.base, self.chunks.current(), r, self.alpha).numpy()
        self.chunks.pop()
        self.steps_done += 1
        cut = self.cut_every > 0 and self.steps_done % self.cut_every == 0
        if cut:  # every episode restarts below, from these seeds and this noise state, as reset() would
            self._cut = (self.next_seed, self.chunks.generator.get_state())
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        dones = np.zeros(self.num_envs, dtype=bool)
        infos: list[dict[str, Any]] = []
        for i, env in enumerate(self.envs):
            obs, env_reward, terminated, truncated, info = env.step(executed[i])
            success = info_success(info)
            self.ep_len[i] += 1
            left = max(0, self.task.max_steps - int(self.ep_len[i])) if terminated and not success else 0
            rewards[i] = step_reward(self.reward, float(env_reward), success, left)
            self.ep_return[i] += rewards[i]
            terminated = bool(terminated) or (self.task.stop_on_success and success)
            truncated = not terminated and (bool(truncated) or cut or self.ep_len[i] >= self.task.max_steps)
            out: dict[str, Any] = {"is_success": success}
            if terminated or truncated:
                out["terminal_observation"] = self._terminal_features(i, obs)
                out["TimeLimit.truncated"] = truncated
                out["episode"] = {"r": float(self.ep_return[i]), "l": int(self.ep_len[i])}
                self._start(i)
                dones[i] = True
            else:
                self.chunks.observe(i, obs)
            infos.append(out)
        return self._features(), rewards, dones, infos

    def _terminal_features(self, i: int, obs: np.ndarray) -> np.ndarray:
        """Features of an episode's last observation (the base's next action there is not drawn: its
        current queue entry, or the last one of an exhausted queue, stands in; it is never executed)."""
        hist = torch.roll(self.chunks.history[i : i + 1], -1, dims=1)
        hist[0, -1] = torch.as_tensor(obs, dtype=torch.float32)
        left = int(self.chunks.left[i])
        idx = self.base.cfg.n_action_steps - max(left, 1)
        base_n = self.base.normalize("action", self.chunks.queue[i : i + 1, idx])
        return residual_features(self.base, hist, base_n)[0].numpy().astype(np.float32)

    def close(self) -> None:
        """Close every env."""
        for env in self.envs:
            env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """An attribute of each env."""
        return [getattr(self.envs[i], attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute on each env."""
        for i in self._get_indices(indices):
            setattr(self.envs[i], attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a method of each env."""
        return [
            getattr(self.envs[i], method_name)(*method_args, **method_kwargs)
            for i in self._get_indices(indices)
        ]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """Whether each env is wrapped by `wrapper_class`."""
        out = []
        for i in self._get_indices(indices):
            env: Any = self.envs[i]
            found = False
            while isinstance(env, gym.Wrapper):
                found = found or isinstance(env, wrapper_class)
                env = env.env
            out.append(found)
        return out

    def _get_indices(self, indices: VecEnvIndices) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else list(indices)
