"""The calibrated monitor: conformal thresholds on windowed scores, FIPER's alarm rule, save and load.

Scores are per decision (each new action chunk). A score's windowed value is the sum of its last `window`
decision scores (zero-padded at the start). Thresholds are split-conformal quantiles over successful
calibration episodes, so that a fresh successful episode (exchangeable with them) raises a false alarm with
probability ≤ δ:
- `style="episode"` (default, FIPER's `ct_quantile`): one threshold per score, the ⌈(n+1)(1−δ)⌉-th smallest
  of the n episodes' maxima over time; P(any alarm of that score in a new success) ≤ δ (guaranteed).
- `style="step"` (FIPER's time-varying `tvt_quantile`): the same quantile per decision index over the
  episodes (an episode that ended is carried at its last value); tighter, not covered by the guarantee.
- `style="normalized"`: time-varying and guaranteed. Each score's per-decision shape a(t) is the mean
  windowed score at decision t over the RND-fitting episodes (independent of the threshold episodes); the
  threshold is γ·a(t), with γ the conformal quantile of the threshold episodes' max_t S(t)/a(t). Under
  `rule="and"` γ is calibrated jointly on max_t min(S_rnd/a_rnd, S_ace/a_ace) (the episode's AND score),
  so the AND alarm itself, not each score, has false-alarm rate ≤ δ.
The alarm fires at the first decision where both windowed scores exceed their thresholds (`rule="and"`,
FIPER's Eq. 7; since it needs each score's alarm, it keeps the ≤ δ bound); `"rnd"` or `"ace"` use one
score alone (the single-score baselines).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import atomic_save_tensors, atomic_write_json, load_tensors, read_json
from scorepolicy.guard.scores import RND, PositionMode, RNDConfig
from scorepolicy.policies import ChunkPolicy

FORMAT = "scorepolicy/guard-monitor"
FORMAT_VERSION = 1
SCORES = ("rnd", "ace")
Style = Literal["episode", "step", "normalized"]
Rule = Literal["and", "rnd", "ace"]


def policy_sha256(policy: ChunkPolicy) -> str:
    """sha256 of a policy's weights: every tensor of its state dict, by name (sampling settings excluded)."""
    h = hashlib.sha256()
    for name, tensor in sorted(policy.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def windowed(scores: np.ndarray, window: int) -> np.ndarray:
    """Sum of the last `window` entries at every index (zero padding before the start), along the last axis."""
    c = np.cumsum(np.asarray(scores, dtype=np.float64), axis=-1)
    out = c.copy()
    out[..., window:] -= c[..., :-window]
    return out


def conformal_threshold(scores: np.ndarray, delta: float, what: str = "scores") -> float:
    """The ⌈(n+1)(1−δ)⌉-th smallest of n calibration scores: a new exchangeable score exceeds it with
    probability ≤ δ. One-line error when n is too small for δ."""
    n = len(scores)
    k = math.ceil((n + 1) * (1 - delta) - 1e-9)
    if k > n:
        need = math.ceil((1 - delta) / delta - 1e-9)
        raise ScorePolicyError(
            f"guard calibration: {what}: δ = {delta:g} needs at least {need} successful calibration episodes, "
            f"got {n}; roll out more episodes (--episodes) or raise --delta"
        )
    return float(np.sort(np.asarray(scores, dtype=np.float64))[k - 1])


def pad_last(traces: list[np.ndarray], length: int) -> np.ndarray:
    """Traces of different lengths as one (n, length) array, each carried at its last value."""
    out = np.zeros((len(traces), length))
    for i, t in enumerate(traces):
        t = np.asarray(t, dtype=np.float64)[:length]
        out[i, : len(t)] = t
        out[i, len(t) :] = t[-1] if len(t) else 0.0
    return out


def thresholds_for(
    traces: list[np.ndarray], delta: float, window: int, style: Style, what: str
) -> np.ndarray:
    """Conformal thresholds (1,) for style 'episode' or (T_max,) for 'step' from raw per-decision traces."""
    sums = [windowed(t, window) for t in traces]
    if style == "episode":
        return np.array([conformal_threshold(np.array([s.max() for s in sums]), delta, what)])
    padded = pad_last(sums, max(len(s) for s in sums))
    return np.array([conformal_threshold(padded[:, t], delta, what) for t in range(padded.shape[1])])


SCALE_FLOOR = 0.1
"""A normalized-style shape a(t) is at least this share of its maximum (no division by a near-zero mean)."""


def step_scale(fit_traces: list[np.ndarray], window: int) -> np.ndarray:
    """Per-decision shape a(t) (T,) of one score: the mean windowed score at decision t over `fit_traces`
    (ended episodes carried at their last value), floored at SCALE_FLOOR × its maximum."""
    sums = [windowed(t, window) for t in fit_traces if len(t)]
    if not sums:
        raise ScorePolicyError(
            "guard calibration: the normalized style needs the RND-fitting episodes' scores; recalibrate"
        )
    mean = pad_last(sums, max(len(s) for s in sums)).mean(axis=0)
    top = float(mean.max())
    return np.maximum(mean, SCALE_FLOOR * top) if top > 0 else np.ones_like(mean)


def normalized(trace: np.ndarray, window: int, scale: np.ndarray) -> np.ndarray:
    """Windowed scores of one episode divided by the shape a(t) (extended with its last value)."""
    s = windowed(trace, window)
    return s / scale[np.minimum(np.arange(len(s)), len(scale) - 1)]


def normalized_thresholds(
    held: dict[str, list[np.ndarray]],
    fit: dict[str, list[np.ndarray]],
    delta: float,
    window: int,
    rule: str,
) -> dict[str, np.ndarray]:
    """Thresholds γ·a(t) per score (style 'normalized'): shapes from `fit`, the scale γ conformal over the
    `held` episodes' maximum normalized score; under rule 'and' one γ for the episodes' maximum over time of
    the smaller normalized score (the AND alarm's own statistic)."""
    scale = {n: step_scale(fit[n], window) for n in SCORES}
    norm = {n: [normalized(t, window, scale[n]) for t in held[n]] for n in SCORES}
    gamma = {n: conformal_threshold(np.array([x.max() for x in norm[n]]), delta, n) for n in SCORES}
    if rule == "and":
        joint = [float(np.minimum(a, b).max()) for a, b in zip(norm["rnd"], norm["ace"], strict=True)]
        gamma = dict.fromkeys(SCORES, conformal_threshold(np.array(joint), delta, "rnd and ace"))
    return {n: gamma[n] * scale[n] for n in SCORES}


@dataclass
class Monitor:
    """A calibrated FIPER monitor for one policy: RND weights, grid cell, thresholds, settings, provenance."""

    rnd: RND
    """Observation-novelty networks (fitted)."""
    cell: Tensor
    """Grid cell (D,) of the action-chunk entropy."""
    thresholds: dict[str, np.ndarray]
    """Threshold per score: (1,) constant or (T,) per decision index (extended with its last value)."""
    settings: dict[str, Any]
    """n_samples, window, delta, style, rule, positions, n_executed, nfe, sampler, model_sha256, rnd config."""
    calibration_traces: dict[str, list[np.ndarray]] = field(default_factory=dict)
    """The threshold episodes' raw per-decision scores (to re-threshold for another δ or window)."""
    fit_traces: dict[str, list[np.ndarray]] = field(default_factory=dict)
    """The RND-fitting episodes' raw per-decision scores (the shapes of the normalized style)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Calibration summary (episodes, successes, seeds, provenance)."""

    @property
    def n_samples(self) -> int:
        """B: sampled chunks per decision for the entropy score."""
        return int(self.settings["n_samples"])

    @property
    def window(self) -> int:
        """Decisions summed in each windowed score."""
        return int(self.settings["window"])

    @property
    def positions(self) -> PositionMode:
        """How executed positions come from actions."""
        mode: PositionMode = self.settings["positions"]
        return mode

    def threshold(self, name: str, decision: int) -> float:
        """Threshold of score `name` at a decision index."""
        t = self.thresholds[name]
        return float(t[min(decision, len(t) - 1)])

    def recalibrated(
        self,
        *,
        delta: float | None = None,
        window: int | None = None,
        style: Style | None = None,
        rule: Rule | None = None,
    ) -> Monitor:
        """The same monitor with thresholds recomputed from its calibration traces (or another rule)."""
        s = dict(self.settings)
        s.update(
            {
                k: v
                for k, v in (("delta", delta), ("window", window), ("style", style), ("rule", rule))
                if v is not None
            }
        )
        if s["style"] == "normalized":
            th = normalized_thresholds(
                self.calibration_traces, self.fit_traces, s["delta"], s["window"], s.get("rule", "and")
            )
        else:
            th = {
                name: thresholds_for(self.calibration_traces[name], s["delta"], s["window"], s["style"], name)
                for name in SCORES
            }
        return dataclasses.replace(self, thresholds=th, settings=s)

    def alarms(self, rnd: np.ndarray, ace: np.ndarray) -> np.ndarray:
        """Per-decision alarms (T,) bool for one episode's raw decision scores, by the monitor's rule."""
        s = {"rnd": windowed(rnd, self.window), "ace": windowed(ace, self.window)}
        over = {k: s[k] > np.array([self.threshold(k, t) for t in range(len(s[k]))]) for k in SCORES}
        rule = self.settings.get("rule", "and")
        return over["rnd"] & over["ace"] if rule == "and" else over[rule]

    def first_alarm(self, rnd: np.ndarray, ace: np.ndarray) -> int | None:
        """Index of the first alarmed decision of an episode, None if none."""
        hits = np.flatnonzero(self.alarms(rnd, ace))
        return int(hits[0]) if len(hits) else None

    def check_policy(self, policy: ChunkPolicy, where: str = "monitor") -> None:
        """One-line error unless the monitor was calibrated for this policy (weights and sampling settings)."""
        if self.settings["model_sha256"] != policy_sha256(policy):
            raise ScorePolicyError(
                f"{where}: calibrated for another policy (model sha256 {self.settings['model_sha256'][:12]}…); "
                "calibrate it for this run with `scorepolicy guard calibrate RUN --out DIR`"
            )
        d = policy.cfg.diffusion
        if (d.nfe, d.sampler, d.sample_sigma_max) != (
            self.settings["nfe"],
            self.settings["sampler"],
            self.settings.get("sample_sigma_max"),
        ):
            raise ScorePolicyError(
                f"{where}: calibrated at NFE {self.settings['nfe']} with {self.settings['sampler']} (σ_max "
                f"{self.settings.get('sample_sigma_max')}), the policy samples at NFE {d.nfe} with {d.sampler} "
                f"(σ_max {d.sample_sigma_max}); use the same sampling flags or recalibrate"
            )

    def save(self, directory: str | Path) -> None:
        """Write DIR/monitor.safetensors (networks, cell, thresholds, traces) and DIR/monitor.json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"rnd.{k}": v.contiguous() for k, v in self.rnd.state_dict().items()}
        tensors["cell"] = self.cell.float().contiguous()
        for name in SCORES:
            tensors[f"thresholds.{name}"] = torch.as_tensor(self.thresholds[name], dtype=torch.float64)
            for i, t in enumerate(self.calibration_traces.get(name, [])):
                tensors[f"traces.{name}.{i}"] = torch.as_tensor(np.asarray(t), dtype=torch.float64)
            for i, t in enumerate(self.fit_traces.get(name, [])):
                tensors[f"fit_traces.{name}.{i}"] = torch.as_tensor(np.asarray(t), dtype=torch.float64)
        atomic_save_tensors(directory / "monitor.safetensors", tensors)
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "settings": self.settings,
            "info": self.info,
            "n_calibration_traces": len(self.calibration_traces.get("rnd", [])),
            "n_fit_traces": len(self.fit_traces.get("rnd", [])),
        }
        atomic_write_json(directory / "monitor.json", meta)

    @classmethod
    def load(cls, directory: str | Path) -> Monitor:
        """Read a monitor written by `save` (safetensors + JSON); one-line errors for missing or foreign files."""
        directory = Path(directory)
        meta_path, tensor_path = directory / "monitor.json", directory / "monitor.safetensors"
        if not meta_path.is_file() or not tensor_path.is_file():
            raise ScorePolicyError(
                f"{directory}: no calibrated monitor (monitor.json and monitor.safetensors); "
                "create one with `scorepolicy guard calibrate RUN --out DIR`"
            )
        meta: Any = read_json(meta_path)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or "settings" not in meta:
            raise ScorePolicyError(f"{meta_path}: not a guard monitor (field 'format' must be '{FORMAT}')")
        tensors = load_tensors(tensor_path)
        s = meta["settings"]
        rnd = RND(int(s["embedding_dim"]), RNDConfig(**s["rnd"]))
        try:
            rnd.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("rnd.")})
            thresholds = {n: tensors[f"thresholds.{n}"].numpy() for n in SCORES}
            n = int(meta.get("n_calibration_traces", 0))
            traces = {name: [tensors[f"traces.{name}.{i}"].numpy() for i in range(n)] for name in SCORES}
            n = int(meta.get("n_fit_traces", 0))
            fit = {name: [tensors[f"fit_traces.{name}.{i}"].numpy() for i in range(n)] for name in SCORES}
            cell = tensors["cell"]
        except (KeyError, RuntimeError) as e:
            raise ScorePolicyError(
                f"{tensor_path}: tensors do not match monitor.json ({str(e)[:80]}); recalibrate"
            ) from e
        return cls(rnd.eval(), cell, thresholds, s, traces, fit, meta.get("info", {}))
