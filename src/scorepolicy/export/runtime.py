"""OnnxPolicy: an exported chunk graph run by onnxruntime behind the acting interface of a torch policy.

It keeps one observation history and action queue per batch row, re-plans every `n_action_steps`, and
draws each chunk's initial noise exactly as the torch policy does (`ChunkPolicy.initial_noise`): from one
generator per batch row after `reset(seeds=...)` (`diffusion/random.py`), else from one generator seeded
with the policy's seed. Fed the same noise, the graph computes the torch policy's chunk (to float32
rounding), so `scorepolicy eval model.onnx` rolls out the episodes of the run it came from.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from scorepolicy.diffusion.random import RowGenerators, randn
from scorepolicy.diffusion.samplers import steps_for_nfe
from scorepolicy.errors import ScorePolicyError
from scorepolicy.export.graph import read_metadata, require_module
from scorepolicy.files import from_dict
from scorepolicy.policies import Goal, PolicyConfig, policy_class
from scorepolicy.policies.base import next_queued_action

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


class OnnxPolicy:
    """A chunk graph written by `export_onnx`, run with onnxruntime (1 intra-op thread by default)."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self.cfg = _policy_config(self.metadata, self.path)
        self.inputs: tuple[str, ...] = tuple(self.metadata["inputs"])
        stats = self.metadata["normalization"]
        self.obs_min = torch.tensor(stats["obs"]["min"], dtype=torch.float32)
        self.obs_max = torch.tensor(stats["obs"]["max"], dtype=torch.float32)
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self._row_generators: RowGenerators | None = None
        self._obs_history: deque[Tensor] = deque(maxlen=self.cfg.n_obs_steps)
        self._action_queue: deque[Tensor] = deque()
        self._goal: Goal | None = None
        self.threads = 0
        self.set_threads(threads)

    @property
    def task(self) -> str | None:
        """The task the exported run was trained for (None when exported from a policy object)."""
        task = self.metadata.get("task")
        return str(task) if task else None

    @property
    def denoiser_calls(self) -> int:
        """Denoiser calls per chunk the graph makes (Heun: two per step, one for the last step)."""
        d = self.cfg.diffusion
        steps = steps_for_nfe(d.sampler, d.nfe)
        return 2 * steps - 1 if d.sampler == "heun" else steps

    def inference_path(self) -> str:
        """How chunks are computed: 'onnx' (the exported graph in onnxruntime)."""
        return "onnx"

    def set_threads(self, threads: int) -> None:
        """Run the graph with `threads` intra-op threads (a new onnxruntime session when it changes)."""
        if threads < 1:
            raise ScorePolicyError(f"--threads: must be at least 1, got {threads}")
        if threads == self.threads:
            return
        ort = require_module("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.threads = threads

    # ---------------------------------------------------------------- noise, as ChunkPolicy draws it
    @property
    def noise_source(self) -> torch.Generator | RowGenerators:
        """Per-row generators after `reset(seeds=...)`, else the policy's one generator."""
        return self._row_generators if self._row_generators is not None else self.generator

    def initial_noise(self, batch: int) -> Tensor:
        """The standard-normal initial noise (batch, T_p, d_a) of the next chunk (as ChunkPolicy's)."""
        rows = self._row_generators
        if rows is not None and len(rows) != batch:
            raise ScorePolicyError(
                f"sampling noise: reset(seeds=...) gave {len(rows)} rows but the batch has {batch}; "
                "call policy.reset(seeds=...) with one seed per batch row"
            )
        return randn((batch, self.cfg.horizon, self.cfg.action_dim), self.noise_source)

    # ---------------------------------------------------------------- acting
    def reset(
        self, seed: int | None = None, goal: Goal | None = None, *, seeds: Sequence[int] | None = None
    ) -> None:
        """Start new episodes: forget history and queued actions; `seed` reseeds the one noise stream,
        `seeds` gives each batch row its own (as `ChunkPolicy.reset`)."""
        if seed is not None and seeds is not None:
            raise ScorePolicyError("reset: pass seed (one stream) or seeds (one per row), not both")
        self._obs_history.clear()
        self._action_queue.clear()
        self._goal = goal
        if seed is not None:
            self.generator.manual_seed(seed)
            self._row_generators = None
        elif seeds is not None:
            self._row_generators = RowGenerators(seeds)

    def predict_action_chunk(
        self, obs: ArrayT, *, goal: Goal | None = None, noise: Tensor | np.ndarray | None = None
    ) -> ArrayT:
        """Raw actions (B, T_p, d_a) for raw observation histories (B, T_o, d_o); `noise` (B, T_p, d_a)
        is the initial noise (default: drawn from the policy's streams, as the torch policy does)."""
        cfg = self.cfg
        o = _float_array(obs)
        self._check_obs(o, (cfg.n_obs_steps, cfg.obs_dim))
        shape = (o.shape[0], cfg.horizon, cfg.action_dim)
        n = self.initial_noise(shape[0]).numpy() if noise is None else _float_array(noise)
        if n.shape != shape:
            raise ScorePolicyError(f"noise: expected shape {shape}, got {n.shape}")
        self._check_observed_task(o)
        feeds = {"obs": o, "noise": n, **self._goal_feeds(goal, o.shape[0])}
        actions = self.session.run(None, feeds)[0]
        return torch.from_numpy(actions) if isinstance(obs, Tensor) else actions

    def select_action(self, obs: ArrayT, goal: Goal | None = None) -> ArrayT:
        """One action per env for observations (B, d_o) or (d_o,); re-plans every n_action_steps."""
        o = torch.from_numpy(_float_array(obs))
        single = o.ndim == 1
        o = o.reshape(1, -1) if single else o
        self._check_obs(o.numpy(), (self.cfg.obs_dim,))
        action = next_queued_action(self, o, goal)
        action = action[0] if single else action
        return action if isinstance(obs, Tensor) else action.numpy()

    # ---------------------------------------------------------------- checks
    def _check_obs(self, obs: np.ndarray, tail: tuple[int, ...]) -> None:
        if tuple(obs.shape[1:]) != tail:
            raise ScorePolicyError(
                f"observation: expected shape (batch, {', '.join(map(str, tail))}), got {tuple(obs.shape)}; "
                f"the policy was trained on observations of size {self.cfg.obs_dim}"
            )
        if not np.isfinite(obs).all():
            raise ScorePolicyError("observation: contains NaN or inf; check the sensor/env output")

    def _check_observed_task(self, obs: np.ndarray) -> None:
        """Task ids carried in the observation (goal.from_observation) must be valid ids."""
        g = self.cfg.goal
        if g.from_observation and g.n_tasks > 0:
            task = np.round(obs[:, -1, self.cfg.obs_dim - g.obs_width])
            if bool(((task < 0) | (task >= g.n_tasks)).any()):
                raise ScorePolicyError(f"observation: task ids must be in 0..{g.n_tasks - 1}")

    def _goal_feeds(self, goal: Goal | None, batch: int) -> dict[str, np.ndarray]:
        """The graph's goal inputs ('task' int64 ids, 'goal' float32 vectors), checked."""
        g, feeds = self.cfg.goal, {}
        if "task" in self.inputs:
            if goal is None or goal.get("task") is None:
                raise ScorePolicyError(
                    f"goal: field 'task' missing; this policy needs task ids 0..{g.n_tasks - 1}"
                )
            task = np.asarray(goal["task"], dtype=np.int64).reshape(-1)
            task = np.broadcast_to(task, (batch,)) if task.size == 1 else task
            if task.shape != (batch,) or bool(((task < 0) | (task >= g.n_tasks)).any()):
                raise ScorePolicyError(f"goal: 'task' must be {batch} ids in 0..{g.n_tasks - 1}")
            feeds["task"] = np.ascontiguousarray(task)
        if "goal" in self.inputs:
            if goal is None or goal.get("goal") is None:
                raise ScorePolicyError(
                    f"goal: field 'goal' missing; this policy needs goal vectors of size {g.goal_dim}"
                )
            vec = _float_array(goal["goal"]).reshape(-1, g.goal_dim)
            vec = np.broadcast_to(vec, (batch, g.goal_dim)) if vec.shape[0] == 1 else vec
            if vec.shape != (batch, g.goal_dim) or not np.isfinite(vec).all():
                raise ScorePolicyError(f"goal: 'goal' must be finite, of shape ({batch}, {g.goal_dim})")
            feeds["goal"] = np.ascontiguousarray(vec)
        return feeds


def _float_array(x: Any) -> np.ndarray:
    """A C-contiguous float32 numpy array of a tensor or array."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def _policy_config(meta: dict[str, Any], path: Path) -> PolicyConfig:
    """The exported policy's config (as config.json has it, with the exported sampler and NFE)."""
    saved = meta.get("policy")
    policy = saved.get("policy") if isinstance(saved, dict) else None
    if not isinstance(policy, dict):
        raise ScorePolicyError(f"{path}: metadata 'policy' missing; export the run again")
    family = policy_class(str(policy.get("kind", "score")))
    cfg = from_dict(family.config_class, policy, f"{path}: metadata policy")
    family.check_config(cfg, str(path))
    return cfg


def is_onnx_path(path: str | Path) -> bool:
    """Whether a path names an exported graph (a .onnx file) rather than a run directory."""
    return Path(path).suffix.lower() == ".onnx"
