"""A policy with a run-time failure monitor: `action, alarm = GuardedPolicy(policy, monitor).select_action(obs)`.

At every decision (each new action chunk) the policy's own chunk and B monitor chunks come from one batched
sampler call (`scores.sample_chunks`); the policy's chunk is exactly the one it would sample unguarded (same
noise streams), so guarding never changes what the robot does. Each batch row (episode) has its own B
monitor noise streams, seeded from its episode seed by `reset(seeds=...)`.

Both classes here also act as batch policies for `evaluation.run_rollouts`: its hook `episode_extras(row)`
adds the guard's fields to each episode's record when the episode ends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from scorepolicy.diffusion.random import RowGenerators
from scorepolicy.errors import ScorePolicyError
from scorepolicy.guard.monitor import SCORES, Monitor, windowed
from scorepolicy.guard.scores import (
    Novelty,
    PositionMode,
    check_guardable,
    chunk_entropy,
    executed_positions,
    monitor_seeds,
    sample_chunks,
)
from scorepolicy.policies import ChunkPolicy, ScorePolicy

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


@dataclass(frozen=True)
class Alarm:
    """The monitor's verdict at the latest decision: per batch row for batched observations (arrays), or
    plain values for a single observation."""

    raised: Any
    """Whether both windowed scores exceed their thresholds (bool, or (B,) bool array)."""
    scores: dict[str, Any]
    """Windowed score per name ('rnd', 'ace'): float or (B,) array."""
    thresholds: dict[str, Any]
    """Threshold per name at this decision: float or (B,) array."""
    first_alarm_step: Any
    """Env step of the episode's first alarm (None if none yet), or a list per row."""


class _ChunkLoop:
    """Observation history, action queue and per-row decision bookkeeping shared by the guard's policies."""

    def __init__(self, policy: ChunkPolicy, n_samples: int, positions: PositionMode) -> None:
        check_guardable(policy)
        if n_samples < 2:
            raise ScorePolicyError(f"guard: n_samples must be at least 2, got {n_samples}")
        self.policy, self.n_samples, self.positions = policy, n_samples, positions
        cfg = policy.cfg
        self.n_obs_steps, self.n_executed = cfg.n_obs_steps, cfg.n_action_steps
        self._history: deque[Tensor] = deque(maxlen=cfg.n_obs_steps)
        self._queue: deque[Tensor] = deque()
        self._seeds: list[int] | None = None
        self._samples: RowGenerators | None = None
        self.step = 0
        self.decision_steps: list[int] = []

    def reset(self, seed: int | None = None, *, seeds: Sequence[int] | None = None) -> None:
        """Start new episodes: the policy's reset (same noise streams), and B monitor streams per row seeded
        from `seeds` (one per row), else from `seed` + row index, else from the policy's config seed."""
        self.policy.reset(seed, seeds=seeds)
        self._history.clear()
        self._queue.clear()
        base = self.policy.cfg.seed if seed is None else int(seed)
        self._seeds = [int(s) for s in seeds] if seeds is not None else None
        self._base_seed = base
        self._samples = None
        self.step = 0
        self.decision_steps = []
        self._start_rows()

    def _start_rows(self) -> None:
        """Reset per-row decision records (subclasses)."""

    def select_action(self, obs: ArrayT) -> ArrayT:
        """One action per env for observations (B, d_o) or (d_o,); a new chunk (and scores) every
        n_action_steps."""
        is_numpy = isinstance(obs, np.ndarray)
        o = torch.as_tensor(np.asarray(obs, dtype=np.float32) if is_numpy else obs, dtype=torch.float32)
        single = o.ndim == 1
        o = o.reshape(1, -1) if single else o
        if self._history and self._history[-1].shape[0] != o.shape[0]:
            raise ScorePolicyError("select_action: batch size changed without reset(); call reset()")
        if not self._history:
            self._history.extend([o] * self.n_obs_steps)
        else:
            self._history.append(o)
        if not self._queue:
            chunk = self.decide(torch.stack(list(self._history), dim=1))
            self._queue.extend(chunk[:, : self.n_executed].unbind(dim=1))
        self.step += 1
        action = self._queue.popleft()
        action = action[0] if single else action
        return action.numpy() if is_numpy else action  # type: ignore[return-value]

    def decide(self, history: Tensor) -> Tensor:
        """One decision for histories (n, T_o, d_o): the policy's chunks (n, H, A), with this decision's
        monitor chunks sampled in the same batched call and scored."""
        samples = self._monitor_rows(history.shape[0])
        cond = self._condition(history)
        chunk, sampled = sample_chunks(self.policy, history, samples, self.n_samples, cond=cond)
        assert chunk is not None
        self.decision_steps.append(self.step)
        self._decide(history, executed_positions(sampled, self.n_executed, self.positions))
        return chunk

    def _monitor_rows(self, n: int) -> RowGenerators:
        if self._samples is None:
            seeds = self._seeds if self._seeds is not None else [self._base_seed + i for i in range(n)]
            if len(seeds) != n:
                raise ScorePolicyError(
                    f"guard: reset(seeds=...) gave {len(seeds)} rows but the batch has {n}"
                )
            self._samples = RowGenerators(monitor_seeds(seeds, self.n_samples))
        return self._samples

    def _condition(self, history: Tensor) -> Tensor | None:
        """The policy's condition terms (n, F) of the histories if a subclass has them at hand, for the
        sampler to reuse (None: the sampler encodes each of its rows)."""
        return None

    def _decide(self, history: Tensor, positions: Tensor) -> None:
        """Score one decision: histories (n, T_o, d_o), monitor chunks' executed positions (n, B, K, D)."""
        raise NotImplementedError


class GuardedPolicy(_ChunkLoop):
    """A score policy with a calibrated FIPER monitor: `action, alarm = guarded.select_action(obs)`.

    Acts exactly as the policy alone; `alarm` reports the latest decision's windowed scores against the
    monitor's thresholds. In `evaluation.run_rollouts` each record gains `alarm` (any alarm in the
    episode), `first_alarm_step` (env step of the first, or None) and, with `keep_scores`, the raw
    per-decision scores `guard_scores` = {'rnd': [...], 'ace': [...], 'steps': [...]}.
    """

    def __init__(self, policy: ChunkPolicy, monitor: Monitor, *, keep_scores: bool = False) -> None:
        monitor.check_policy(policy)
        super().__init__(policy, monitor.n_samples, monitor.positions)
        self.monitor = monitor
        self.novelty = Novelty(policy, monitor.rnd)
        self._rnd: Tensor | None = None  # this decision's RND scores, computed with the embeddings
        self.keep_scores = keep_scores
        self._raw: dict[str, list[np.ndarray]] = {k: [] for k in SCORES}
        self._cum: dict[str, deque[np.ndarray]] = {}
        self._first: list[int | None] = []
        self._last: Alarm | None = None

    def _start_rows(self) -> None:
        self._raw = {k: [] for k in SCORES}
        self._cum = {k: deque(maxlen=self.monitor.window + 1) for k in SCORES}
        self._first, self._last = [], None

    def select_action(self, obs: ArrayT) -> tuple[ArrayT, Alarm]:  # type: ignore[override]
        """(action, alarm) for observations (B, d_o) or (d_o,)."""
        action = super().select_action(obs)
        assert self._last is not None
        alarm = self._last
        if np.ndim(obs) == 1:
            alarm = Alarm(
                bool(alarm.raised[0]),
                {k: float(v[0]) for k, v in alarm.scores.items()},
                {k: float(v[0]) for k, v in alarm.thresholds.items()},
                alarm.first_alarm_step[0],
            )
        return action, alarm

    def _condition(self, history: Tensor) -> Tensor | None:
        """The RND scores of the histories (kept for `_decide`) and, where the policy's chunk is one frozen
        graph (goal-free; its condition then has the bits of the novelty graph's embedding), the embeddings
        they came from as the sampler's condition: each observation is encoded once per decision."""
        self.policy._check_obs(history, (self.n_obs_steps, self.policy.cfg.obs_dim))  # before the RND's
        shared = self.policy.inference_path() == "torch-graph" and isinstance(self.policy, ScorePolicy)
        if not shared:
            self._rnd = self.novelty(history)
            return None
        cond, self._rnd = self.novelty.scored(history)
        return cond

    def _decide(self, history: Tensor, positions: Tensor) -> None:
        """Score one decision for all rows at once. The windowed score is the difference of running sums,
        the same float64 arithmetic as `Monitor.alarms` offline (`windowed`: cumsum, then c[t] − c[t−w])."""
        n = history.shape[0]
        if not self._first:
            self._first = [None] * n
        assert self._rnd is not None
        raw = {
            "rnd": self._rnd.numpy(),
            "ace": chunk_entropy(positions, self.monitor.cell).numpy(),
        }
        w, rule = self.monitor.window, self.monitor.settings.get("rule", "and")
        t = len(self._raw["rnd"])
        scores, th, over = {}, {}, {}
        for k in SCORES:
            cum = self._cum[k]
            total = cum[-1] + raw[k] if cum else raw[k].astype(np.float64)
            cum.append(total)
            self._raw[k].append(raw[k])
            scores[k] = total - cum[0] if t >= w else total.copy()
            th[k] = np.full(n, self.monitor.threshold(k, t))
            over[k] = scores[k] > th[k]
        raised = over["rnd"] & over["ace"] if rule == "and" else over[rule]
        for j in np.flatnonzero(raised):
            if self._first[j] is None:
                self._first[j] = self.step
        self._last = Alarm(raised, scores, th, list(self._first))

    def rollout_policy(self) -> GuardedRollout:
        """This guarded policy as a batch policy for `evaluation.run_rollouts` (select_action → actions)."""
        return GuardedRollout(self)

    def episode_extras(self, row: int) -> dict[str, Any]:
        """The guard's fields for the record of batch row `row`'s episode (called when it ends)."""
        if not self._first:
            return {"alarm": False, "first_alarm_step": None}
        first = self._first[row]
        out: dict[str, Any] = {"alarm": first is not None, "first_alarm_step": first}
        if self.keep_scores:
            out["guard_scores"] = {k: [float(v[row]) for v in self._raw[k]] for k in SCORES}
            out["guard_scores"]["steps"] = list(self.decision_steps[: len(self._raw["rnd"])])
        return out


class GuardedRollout:
    """A `GuardedPolicy` seen by the rollout loop: actions only; the alarms go to the episode records."""

    def __init__(self, guarded: GuardedPolicy) -> None:
        self.guarded = guarded

    def reset(self, seed: int | None = None, *, seeds: Sequence[int] | None = None) -> None:
        """Reset the guarded policy (see `GuardedPolicy.reset`)."""
        self.guarded.reset(seed, seeds=seeds)

    def select_action(self, obs: np.ndarray) -> np.ndarray:
        """Actions (B, d_a) for observations (B, d_o)."""
        return self.guarded.select_action(obs)[0]

    def episode_extras(self, row: int) -> dict[str, Any]:
        """The guard's fields for the record of row `row`'s episode."""
        return self.guarded.episode_extras(row)


class ScoreRecorder(_ChunkLoop):
    """Acts as the policy and keeps, per episode seed, what calibration needs: the observation history and
    the B monitor chunks' executed positions of every decision (kept in memory, not in the records)."""

    def __init__(self, policy: ChunkPolicy, n_samples: int, positions: PositionMode) -> None:
        super().__init__(policy, n_samples, positions)
        self.traces: dict[int, tuple[Tensor, Tensor]] = {}
        self._rows: list[tuple[list[Tensor], list[Tensor]]] = []

    def _start_rows(self) -> None:
        self._rows = []

    def _decide(self, history: Tensor, positions: Tensor) -> None:
        if not self._rows:
            self._rows = [([], []) for _ in range(history.shape[0])]
        for i, (hist, pos) in enumerate(self._rows):
            hist.append(history[i].clone())
            pos.append(positions[i].clone())

    def episode_extras(self, row: int) -> dict[str, Any]:
        """Store the finished episode's decisions under its seed; adds nothing to the record."""
        if self._seeds is not None and self._rows:
            hist, pos = self._rows[row]
            self.traces[self._seeds[row]] = (torch.stack(hist), torch.stack(pos))
        return {}


def windowed_scores(rnd: Sequence[float], ace: Sequence[float], window: int) -> dict[str, np.ndarray]:
    """Windowed traces of raw decision scores (for plots)."""
    return {"rnd": windowed(np.asarray(rnd), window), "ace": windowed(np.asarray(ace), window)}
