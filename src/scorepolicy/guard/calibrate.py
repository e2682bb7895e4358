"""Calibrating a monitor: roll out the policy with the project's evaluation, keep the successful episodes,
fit the observation-novelty networks on one part of them and set conformal thresholds on the other.

The two parts are disjoint on purpose: the predictor's error is lower on embeddings it was trained on, so
thresholds set on those episodes would be too low for fresh ones and break the ≤ δ guarantee. The entropy
grid cell (FIPER: 1% of the calibration predictions' range per axis) is taken from the fitting part too.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError, check_field
from scorepolicy.evaluation.rollout import RolloutOptions
from scorepolicy.evaluation.waves import run_rollouts
from scorepolicy.guard.guarded import ScoreRecorder
from scorepolicy.guard.monitor import SCORES, Monitor, Rule, Style, policy_sha256
from scorepolicy.guard.scores import RND, Novelty, PositionMode, RNDConfig, cell_size, chunk_entropy
from scorepolicy.policies import ChunkPolicy
from scorepolicy.provenance import provenance

CALIBRATION_SEED = 300_000
"""First env seed of calibration rollouts by default: apart from `select`'s validation seeds (0..) and the
reported evaluation seeds (Push-T 100000..)."""


@dataclasses.dataclass(frozen=True)
class GuardSettings:
    """How the monitor scores and alarms (everything but δ's data)."""

    n_samples: int = 8
    """B: chunks sampled per decision for the entropy score (one batched call with the policy's own)."""
    window: int = 8
    """Decisions summed in each windowed score (FIPER's w, in decisions of n_action_steps env steps). 8 was
    chosen on Push-T validation seeds 400000.. (per-episode AUROC of failure vs success, RND 0.65 → 0.68
    and entropy 0.69 → 0.73 from w = 4 to 8), never on the benchmark's test seeds."""
    style: Style = "episode"
    """'episode': one threshold per score, P(false alarm in a success) ≤ δ guaranteed; 'step': a threshold
    per decision index (tighter, not guaranteed); 'normalized': a threshold per decision index shaped by
    the RND-fitting episodes and scaled on the others, ≤ δ guaranteed for the rule's alarm itself."""
    rule: Rule = "and"
    """'and': alarm when both scores exceed (FIPER); 'rnd' or 'ace': that score alone."""
    positions: PositionMode = "action"
    """'action': actions are positions (Push-T); 'cumsum': velocities, summed (obstacle task)."""
    cell_fraction: float = 0.01
    """Entropy grid cell as a fraction of the calibration positions' range per axis."""
    fit_fraction: float = 0.5
    """Share of the successful calibration episodes that fits the RND (the rest sets the thresholds)."""
    rnd: RNDConfig = dataclasses.field(default_factory=RNDConfig)
    """Sizes and training of the novelty networks."""

    def check(self) -> None:
        """One-line errors for invalid settings."""
        check_field("n_samples", self.n_samples, at_least=2)
        check_field("window", self.window, at_least=1)
        check_field("cell_fraction", self.cell_fraction, above=0)
        check_field("fit_fraction", self.fit_fraction, above=0, below=1)


def embeddings(policy: ChunkPolicy, histories: Tensor, batch: int = 4096) -> Tensor:
    """The policy's observation embeddings (N, F) of histories (N, T_o, d_o), in batches."""
    parts = [policy.observation_embedding(histories[i : i + batch]) for i in range(0, len(histories), batch)]
    return torch.cat(parts).clone()


def raw_scores(novelty: Novelty, cell: Tensor, trace: tuple[Tensor, Tensor]) -> dict[str, np.ndarray]:
    """Per-decision raw scores of one episode from its histories (T, T_o, d_o) and positions (T, B, K, D),
    the same bits as the guarded policy computes them online."""
    hist, pos = trace
    return {"rnd": novelty(hist).numpy(), "ace": chunk_entropy(pos, cell).numpy()}


def record_rollouts(
    policy: ChunkPolicy,
    task: Task,
    seeds: range,
    settings: GuardSettings,
    options: RolloutOptions | None = None,
) -> tuple[list[dict[str, Any]], dict[int, tuple[Tensor, Tensor]]]:
    """Roll out with the project's evaluation; the records and each episode's decision traces by seed."""
    recorder = ScoreRecorder(policy, settings.n_samples, settings.positions)
    records = run_rollouts(recorder, task, seeds, options)
    return records, recorder.traces


def calibrate(
    policy: ChunkPolicy,
    task: Task,
    episodes: int = 50,
    delta: float = 0.05,
    *,
    seed: int = CALIBRATION_SEED,
    settings: GuardSettings | None = None,
    options: RolloutOptions | None = None,
) -> Monitor:
    """Roll out `episodes` calibration episodes (seeds seed..), keep the successes, and return a monitor
    whose false-alarm rate on fresh successful episodes is ≤ δ (style 'episode')."""
    settings = settings or GuardSettings()
    settings.check()
    check_field("delta", delta, above=0, below=1)
    records, traces = record_rollouts(policy, task, range(seed, seed + episodes), settings, options)
    good = [int(r["seed"]) for r in records if "error" not in r and float(r.get("success", 0.0)) > 0.5]
    n_held_min = math.ceil((1 - delta) / delta - 1e-9)
    n_fit = max(1, round(settings.fit_fraction * len(good)))
    if len(good) - n_fit < n_held_min:
        raise ScorePolicyError(
            f"guard calibration: {len(good)} of {episodes} episodes succeeded; δ = {delta:g} needs at least "
            f"{n_held_min} of them to set thresholds after a {settings.fit_fraction:g} share fits the RND; "
            "roll out more episodes (--episodes) or raise --delta"
        )
    order = np.random.default_rng(settings.rnd.seed).permutation(len(good))
    fit = sorted(good[i] for i in order[:n_fit])
    held = sorted(good[i] for i in order[n_fit:])
    monitor = fit_monitor(policy, [traces[s] for s in fit], [traces[s] for s in held], delta, settings)
    monitor.info.update(
        {
            "task": task.name,
            "episodes": episodes,
            "seeds": [seed, seed + episodes - 1],
            "successes": len(good),
            "success_rate": len(good) / episodes,
            "fit_seeds": fit,
            "threshold_seeds": held,
            "provenance": provenance(task.name),
        }
    )
    return monitor


def fit_monitor(
    policy: ChunkPolicy,
    fit: list[tuple[Tensor, Tensor]],
    held: list[tuple[Tensor, Tensor]],
    delta: float,
    settings: GuardSettings,
) -> Monitor:
    """Fit the RND and the grid cell on `fit` episode traces; thresholds from the `held` ones."""
    hist = torch.cat([h for h, _ in fit])
    z = embeddings(policy, hist)
    rnd = RND(z.shape[1], settings.rnd)
    losses = rnd.fit(z, settings.rnd)
    cell = cell_size(torch.cat([p for _, p in fit]), settings.cell_fraction)
    novelty = Novelty(policy, rnd)
    per_episode = [raw_scores(novelty, cell, t) for t in held]
    traces = {name: [e[name] for e in per_episode] for name in SCORES}
    in_fit = [raw_scores(novelty, cell, t) for t in fit]
    fit_traces = {name: [e[name] for e in in_fit] for name in SCORES}
    d = policy.cfg.diffusion
    meta: dict[str, Any] = {
        "n_samples": settings.n_samples,
        "window": settings.window,
        "delta": delta,
        "style": settings.style,
        "rule": settings.rule,
        "positions": settings.positions,
        "cell_fraction": settings.cell_fraction,
        "n_executed": policy.cfg.n_action_steps,
        "nfe": d.nfe,
        "sampler": d.sampler,
        "sample_sigma_max": d.sample_sigma_max,
        "embedding_dim": int(z.shape[1]),
        "model_sha256": policy_sha256(policy),
        "rnd": dataclasses.asdict(settings.rnd),
    }
    info = {"n_fit": len(fit), "n_threshold": len(held), "rnd_loss": losses}
    monitor = Monitor(rnd, cell, {}, meta, traces, fit_traces, info)
    return monitor.recalibrated()
