"""ScorePolicy: EDM (Karras) score-based diffusion over action chunks, BESO-style (few steps, goals, CFG)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from scorepolicy.diffusion import (
    Precond,
    edm_denoise,
    edm_loss,
    edm_precond,
    get_sampler,
    get_sigmas,
    guide,
    sample_log_logistic,
    sample_log_normal,
    sample_log_uniform,
    steps_for_nfe,
)
from scorepolicy.diffusion.edm import RawNet, consistency_precond
from scorepolicy.diffusion.random import TrainNoise, bernoulli, randint, randn
from scorepolicy.errors import ScorePolicyError
from scorepolicy.models import MoDEDenoiser
from scorepolicy.policies.base import (
    ChunkPolicy,
    Goal,
    feature_width,
    frozen_trace,
    read_policy_config,
    scalar,
)
from scorepolicy.policies.config import DiffusionConfig, PolicyConfig, ScorePolicyConfig
from scorepolicy.policies.images import Crop, Frames
from scorepolicy.policies.registry import register_policy

DETERMINISTIC_SAMPLERS = ("euler", "heun", "ddim", "dpmpp_2m")
"""Samplers that draw no noise after the initial sample: a chunk is a fixed function of (obs, noise)."""
GraphKind = Literal["chunk", "from-condition"]
"""The frozen graphs of a score policy: the whole chunk from observations, or the sampler from conditions."""


class ScheduleLevels:
    """A sampling schedule with what depends only on its noise levels: σ features and, for MoDE, the
    fused experts of every level (keyed by the level's index in the schedule, never by a float)."""

    def __init__(
        self,
        sigmas: Tensor,
        feats: Tensor,
        prepared: list[Any],
        precond: Callable[[Tensor], Precond],
        device: torch.device,
    ) -> None:
        self.sigmas = sigmas  # on the CPU: the samplers branch on it without device synchronisation
        self.feats = feats
        self.prepared = prepared
        positive = sigmas[sigmas > 0].to(device)
        self.precond = [precond(positive[i : i + 1]) for i in range(len(positive))]
        self.values: list[float] = sigmas.tolist()
        """The schedule as floats (exactly the tensor's values)."""
        self._index = {v: i for i, v in enumerate(self.values) if v > 0}
        self._calls: dict[str, list[int | None]] = {}

    def level(self, sigma: Tensor) -> int | None:
        """Index of σ in the schedule (samplers pass the schedule's own entries), None if off-schedule."""
        return self._index.get(float(sigma.reshape(-1)[0]))

    def call_levels(self, sampler: str) -> list[int | None]:
        """The level of each denoiser call a deterministic sampler makes on this schedule, in call order
        (found once by running it with a stand-in denoiser; fixed for a schedule and a sampler)."""
        if sampler not in self._calls:
            found: list[int | None] = []

            def probe(x: Tensor, sigma: Tensor) -> Tensor:
                found.append(self.level(sigma))
                return torch.zeros_like(x)

            get_sampler(sampler)(probe, torch.zeros(1, 1), self.values)
            self._calls[sampler] = found
        return self._calls[sampler]


@register_policy("score")
class ScorePolicy(ChunkPolicy):
    """A score-based diffusion policy over action chunks (EDM preconditioning, few-step samplers)."""

    config_class = ScorePolicyConfig
    takes_images = True

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__(cfg)
        self._schedules: dict[tuple[Any, ...], ScheduleLevels] = {}
        self._graphs: dict[tuple[Any, ...], torch.jit.ScriptModule | None] = {}

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._schedules.clear()
        self._graphs.clear()

    def _drop_statistics_caches(self) -> None:
        super()._drop_statistics_caches()
        self._graphs.clear()  # the graphs hold the statistics as constants

    # ---------------------------------------------------------------- training
    def sample_training_sigmas(self, n: int, generator: TrainNoise | None = None) -> Tensor:
        """Noise levels from the configured training density, on the policy's device."""
        d, dev = self.cfg.diffusion, self.device
        if d.train_density == "lognormal":
            return sample_log_normal(n, d.p_mean, d.p_std, d.sigma_min, d.sigma_max, generator, dev)
        if d.train_density == "loglogistic":
            loc = math.log(d.sigma_data)
            return sample_log_logistic(n, loc, d.loglogistic_scale, d.sigma_min, d.sigma_max, generator, dev)
        return sample_log_uniform(n, d.sigma_min, d.sigma_max, generator, dev)

    def training_condition(self, batch: dict[str, Tensor], generator: TrainNoise | None) -> Tensor:
        """The condition of each sample, with goal dropout (classifier-free guidance training)."""
        g = self.cfg.goal
        explicit: Goal = {k: batch[k] for k in ("task", "goal") if k in batch}
        state, goal = self.split_observation(batch["obs"], explicit or None)
        images: Any = batch.get("images")
        obs = self.observation_features(state, images, self._crop_offsets(generator))
        if not g.enabled:
            return self.condition(obs, None)
        if not goal:
            raise ScorePolicyError(
                "batch: this policy is goal-conditioned but the data has no goals ('task'/'goal'); "
                "set goal.n_tasks=0 and goal.goal_dim=0 or use data with goals"
            )
        b = obs.shape[0]
        keep = self.goal_keep_mask(b, generator) if g.dropout > 0 else None
        element_keep = None
        if g.dropout_mode == "element" and g.goal_dim > 0 and g.dropout > 0:
            element_keep = bernoulli((b, g.goal_dim), 1.0 - g.dropout, generator, self.device)
            keep = keep if g.n_tasks > 0 else None
        return self.condition(obs, goal, keep=keep, element_keep=element_keep)

    def _crop_offsets(self, generator: TrainNoise | None) -> Crop:
        """Random crop corners from the training noise stream (a rank's share under data parallelism)."""

        def offsets(shape: tuple[int, ...], high: int) -> Tensor:
            return randint(high, shape, generator, self.device)

        return offsets

    def compute_loss(
        self, batch: dict[str, Tensor], generator: TrainNoise | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """EDM denoising loss on raw {'obs': (B, T_o, d_o), 'action': (B, T_p, d_a)[, 'task', 'goal']}
        (image policies: and 'images' {camera: uint8 (B, T_o, H, W, 3)}).

        With train_copies K > 1 (level-2 minibatching), each condition is encoded once and paired with K
        independently noised copies of its action chunk: B·K denoising examples per batch.
        """
        if self.cfg.diffusion.precond != "edm":
            raise ScorePolicyError(
                "policy.diffusion.precond: 'consistency' students are trained by `scorepolicy distill`, "
                "not by the denoising loss; train with precond 'edm'"
            )
        x0 = self.normalize("action", batch["action"])
        cond = self.training_condition(self.augment_observations(batch, generator), generator)
        k = self.cfg.diffusion.train_copies
        if k > 1:
            cond, x0 = cond.repeat_interleave(k, dim=0), x0.repeat_interleave(k, dim=0)
        sigma = self.sample_training_sigmas(x0.shape[0], generator)
        noise = randn(x0.shape, generator, device=x0.device)

        def net(x_in: Tensor, c_noise: Tensor) -> Tensor:
            return self.denoiser(x_in, self.denoiser.sigma_features(c_noise), cond)

        loss = edm_loss(net, x0, sigma, noise, self.cfg.diffusion.sigma_data).mean()
        info = {"denoise_loss": scalar(loss)}
        if isinstance(self.denoiser, MoDEDenoiser):
            balance = self.denoiser.balance_loss
            info["balance_loss"] = scalar(balance)
            loss = loss + self.cfg.mode.balance_weight * balance
        info["loss"] = scalar(loss)
        return loss, info

    # ---------------------------------------------------------------- inference
    def precond(self, sigma: Tensor) -> Precond:
        """The output scalings of D(x; σ) at noise levels σ (N,): EDM's, or a distilled student's."""
        d = self.cfg.diffusion
        if d.precond == "consistency":
            return consistency_precond(sigma, d.sigma_data, d.sigma_min)
        return edm_precond(sigma, d.sigma_data)

    def sigmas(self, nfe: int | None = None) -> Tensor:
        """The sampling schedule for `nfe` denoiser calls (default: the config's)."""
        d = self.cfg.diffusion
        steps = steps_for_nfe(d.sampler, nfe or d.nfe)
        top = d.sample_sigma_max or d.sigma_max
        return get_sigmas(d.schedule, steps, d.sigma_min, top, d.rho, d.terminal)

    @torch.inference_mode()
    def predict_action_chunk(
        self,
        obs: Tensor | Frames,
        *,
        goal: Goal | None = None,
        nfe: int | None = None,
        noise: Tensor | None = None,
        guidance: float | None = None,
    ) -> Tensor:
        """Raw actions (B, T_p, d_a) on the policy's device for raw observation histories (B, T_o, d_o)
        (moved to the policy's device if they are elsewhere); image policies take a dict {"state": (B, T_o, d_o),
        camera key: uint8 (B, T_o, H, W, 3)}, whose frames are encoded once per chunk.

        `noise` (B, T_p, d_a), if given, is the standard-normal initial noise (for noise-space RL).
        Goal-conditioned policies take `goal` and the guidance weight λ (default: the config's):
        D = D_u + λ(D_c − D_u); λ = 0 needs no goal (goal-free), λ = 1 runs only the conditional model.
        """
        cfg = self.cfg
        obs, images = self.split_input(obs, (cfg.n_obs_steps,))
        shape = (obs.shape[0], cfg.horizon, cfg.action_dim)
        if noise is None:
            noise = self.initial_noise(shape[0])
        elif tuple(noise.shape) != shape:
            raise ScorePolicyError(f"noise: expected shape {shape}, got {tuple(noise.shape)}")
        noise = noise.to(self.device)
        graph = self._chunk_graph(nfe)
        if graph is not None:
            return graph(obs.float(), noise.float())
        return self._sample_chunk(obs.float(), noise, goal, nfe, guidance, images=images)

    def _sample_chunk(
        self,
        obs: Tensor,
        noise: Tensor,
        goal: Goal | None,
        nfe: int | None,
        guidance: float | None,
        *,
        unrolled: bool = False,
        images: Frames | None = None,
    ) -> Tensor:
        """Raw observation histories and standard-normal noise → raw action chunks (the sampler run).

        `unrolled` (deterministic samplers, for `torch.export`): the schedule is given to the sampler as
        floats and each denoiser call finds its level by its place in the call order, so that no Python
        branch reads a tensor; same arithmetic otherwise. `images` (image policies) are encoded here, once.
        """
        state, goal = self.split_observation(obs, goal)
        cond = self._sampling_condition(self.observation_features(state, images), goal, guidance)
        return self._run_sampler(cond, noise, nfe, guidance, unrolled=unrolled)

    def _run_sampler(
        self, cond: list[Tensor], noise: Tensor, nfe: int | None, guidance: float | None, *, unrolled: bool
    ) -> Tensor:
        """Sampling conditions ([cond] or [uncond, cond], see `_sampling_condition`) and standard-normal
        noise → raw action chunks (the sampler run of `_sample_chunk`)."""
        cfg = self.cfg
        levels = self._schedule(nfe)
        lam = cfg.goal.guidance if guidance is None else guidance
        guided = len(cond) == 2
        cond_all = torch.cat(cond) if guided else cond[0]
        order = iter(levels.call_levels(cfg.diffusion.sampler)) if unrolled else None

        def denoise(x: Tensor, sigma: Tensor) -> Tensor:
            i = levels.level(sigma) if order is None else next(order)
            net = self._level_net(levels, i, cond_all)
            if i is None:
                sigma = sigma.to(x.device)  # an off-schedule σ (the schedule itself stays on the CPU)
            sigma2 = sigma.repeat(2) if guided and sigma.numel() > 1 else sigma
            pre = self.precond(sigma2) if i is None else levels.precond[i]  # computed once per level
            if not guided:
                return edm_denoise(net, x, sigma, cfg.diffusion.sigma_data, pre)
            both = edm_denoise(net, torch.cat([x, x]), sigma2, cfg.diffusion.sigma_data, pre)
            b = x.shape[0]  # slices, not chunk(2): ONNX's SplitToSequence trips onnxscript's folding
            uncond, conditional = both[:b], both[b:]
            return guide(conditional, uncond, lam)

        sampler = get_sampler(cfg.diffusion.sampler)
        sigmas = levels.values if unrolled else levels.sigmas
        x = sampler(denoise, noise * sigmas[0], sigmas, generator=self.noise_source)
        return self.unnormalize("action", x.clamp(-1.0, 1.0))

    @torch.inference_mode()
    def predict_from_condition(self, cond: Tensor, noise: Tensor, *, nfe: int | None = None) -> Tensor:
        """Raw actions (B, T_p, d_a) from condition terms (B, F), as `observation_embedding` returns them,
        and standard-normal initial noise (B, T_p, d_a): the sampler alone, the observations already
        encoded. Many chunks for one observation encode it once: its row of terms, repeated. Goal-free
        policies only (a goal-conditioned one mixes conditions; use `predict_action_chunk`)."""
        if self.cfg.goal.enabled:
            raise ScorePolicyError(
                "predict_from_condition: this policy is goal-conditioned; sample with predict_action_chunk"
            )
        shape = (cond.shape[0], self.cfg.horizon, self.cfg.action_dim)
        if cond.ndim != 2 or tuple(noise.shape) != shape:
            raise ScorePolicyError(
                f"predict_from_condition: expected cond (B, F) and noise {shape}, got "
                f"{tuple(cond.shape)} and {tuple(noise.shape)}"
            )
        cond, noise = cond.to(self.device).float(), noise.to(self.device).float()
        graph = self._sampler_graph(nfe)
        if graph is not None:
            return graph(cond, noise)
        return self._run_sampler([cond], noise, nfe, None, unrolled=False)

    def inference_path(self) -> str:
        """How `predict_action_chunk` runs now: 'torch-graph' (the whole chunk as one frozen TorchScript
        graph), else 'torch-denoiser-graph' or 'torch-eager'."""
        return "torch-graph" if self._chunk_graph(None) is not None else super().inference_path()

    def _chunk_graph(self, nfe: int | None) -> torch.jit.ScriptModule | None:
        """The whole chunk (condition, every sampler step, unnormalisation) as one frozen TorchScript
        graph, built on first use per schedule while frozen; None where it does not apply.

        At batch 1 a chunk costs per-op dispatch more than arithmetic, and one graph removes Python's
        share of it (about halves the time). Deterministic samplers only, without goals, MLP or
        transformer denoisers (MoDE keeps its own per-level expert cache), on a CPU.
        """
        return self._graph(nfe, "chunk")

    def _sampler_graph(self, nfe: int | None) -> torch.jit.ScriptModule | None:
        """`predict_from_condition`'s sampler (every step and the unnormalisation, from condition terms) as
        one frozen TorchScript graph, where the whole-chunk graph applies."""
        return self._graph(nfe, "from-condition")

    def _graph(self, nfe: int | None, kind: GraphKind) -> torch.jit.ScriptModule | None:
        """The frozen graph of `kind` at this schedule, traced on first use (see `_chunk_graph`)."""
        cfg, d = self.cfg, self.cfg.diffusion
        if (
            not self._frozen
            or self.image_encoder is not None
            or self.device.type != "cpu"
            or cfg.goal.enabled
            or cfg.denoiser == "mode"
            or d.sampler not in DETERMINISTIC_SAMPLERS
        ):
            return None
        key = (kind, *self._schedule_key(nfe))
        if key not in self._graphs:  # a failed trace is remembered as None
            self._graphs[key] = self._trace_graph(nfe, kind)
        return self._graphs[key]

    def _trace_graph(self, nfe: int | None, kind: GraphKind) -> torch.jit.ScriptModule | None:
        """Trace `_sample_chunk` (kind 'chunk') or `_run_sampler` from condition terms at this schedule into
        a frozen graph (None if TorchScript fails here)."""
        cfg, fast = self.cfg, list(self._fast)
        noise = torch.zeros(2, cfg.horizon, cfg.action_dim)
        module: torch.nn.Module
        if kind == "chunk":
            first = torch.zeros(2, cfg.n_obs_steps, cfg.obs_dim)
            module, what = _ChunkSampler(self, nfe), "whole-chunk"
        else:
            first = self.condition(torch.zeros(2, cfg.n_obs_steps, feature_width(cfg)), None)
            module, what = _ConditionSampler(self, nfe), "sampler"
        self._fast.clear()  # trace the eager denoiser into the one graph
        try:
            return frozen_trace(module, (first, noise), f"{what} graph", "step-by-step sampling")
        finally:
            self._fast[:] = fast

    def export_module(self, nfe: int | None = None) -> torch.nn.Module:
        """The whole chunk at this schedule as a module for `torch.export` (and ONNX): raw observation
        histories, the standard-normal initial noise and, where the graph needs them, task ids and goal
        vectors → raw action chunks, with conditioning, every sampler step, guidance and unnormalisation
        inside. Deterministic samplers only. Leaves the policy in eval mode with its caches valid."""
        d = self.cfg.diffusion
        if self.image_encoder is not None:
            raise ScorePolicyError(
                "export: policies conditioned on camera frames cannot be exported to a graph yet; "
                "serve the run with `scorepolicy serve` instead"
            )
        if d.sampler not in DETERMINISTIC_SAMPLERS:
            raise ScorePolicyError(
                f"--sampler {d.sampler}: draws fresh noise at every step, which a graph with one noise input "
                f"cannot reproduce; choose a deterministic sampler ({', '.join(DETERMINISTIC_SAMPLERS)})"
            )
        self.eval()
        self._clear_caches()
        self._frozen = True  # schedule and statistics cached as real values before tracing; no TorchScript
        self._schedule(nfe).call_levels(d.sampler)
        for name in self.normalized_fields():
            self._scale(name)
        return _ExportChunk(self, nfe)

    def graph_goal_inputs(self) -> tuple[str, ...]:
        """Goal inputs an exported chunk takes besides obs and noise: 'task' (int64 ids) and/or 'goal'
        (raw vectors), unless the goal rides in the observation or guidance 0 makes the policy goal-free."""
        g = self.cfg.goal
        if not g.enabled or g.from_observation or g.guidance == 0.0:
            return ()
        return tuple(name for name, used in (("task", g.n_tasks > 0), ("goal", g.goal_dim > 0)) if used)

    def _sampling_condition(self, obs: Tensor, goal: Goal | None, guidance: float | None) -> list[Tensor]:
        """[cond] for one pass, or [uncond, cond] when guidance mixes both."""
        g = self.cfg.goal
        if not g.enabled:
            return [self.condition(obs, None)]
        lam = g.guidance if guidance is None else guidance
        if lam == 0.0:
            return [self.condition(obs, None)]
        if goal is None:
            raise ScorePolicyError(
                "goal: this policy is goal-conditioned; pass goal={'task': …, 'goal': …} or guidance=0 (goal-free)"
            )
        conditional = self.condition(obs, goal)
        return [conditional] if lam == 1.0 else [self.condition(obs, None), conditional]

    def _schedule_key(self, nfe: int | None) -> tuple[Any, ...]:
        """What a schedule (and a whole-chunk graph) depends on: the NFE and every diffusion setting."""
        d = self.cfg.diffusion
        return (nfe or d.nfe, *(getattr(d, f.name) for f in dataclasses.fields(d)))  # all scalars

    def _schedule(self, nfe: int | None) -> ScheduleLevels:
        """The σ schedule with per-level σ features (and MoDE's fused experts); cached while frozen."""
        d, key = self.cfg.diffusion, self._schedule_key(nfe)
        if key in self._schedules:
            return self._schedules[key]
        sigmas = self.sigmas(nfe)
        positive = sigmas[sigmas > 0].to(self.device)
        feats = self.denoiser.sigma_features(edm_precond(positive, d.sigma_data).c_noise)
        prepared: list[Any] = [None] * len(positive)
        if isinstance(self.denoiser, MoDEDenoiser) and self.cfg.mode.cache_experts:
            prepared = [self.denoiser.prepare(feats[i : i + 1]) for i in range(len(positive))]
        levels = ScheduleLevels(sigmas, feats, prepared, self.precond, self.device)
        if self._frozen:
            self._schedules[key] = levels
        return levels

    def _level_net(self, levels: ScheduleLevels, i: int | None, cond: Tensor) -> RawNet:
        """The raw network at schedule level i (precomputed σ features / fused experts; None = compute)."""

        def net(x_in: Tensor, c_noise: Tensor) -> Tensor:
            if i is None:  # a level off the schedule (not used by the built-in samplers)
                return self.denoiser(x_in, self.denoiser.sigma_features(c_noise[:1]), cond)
            feat = levels.feats[i : i + 1]
            if isinstance(self.denoiser, MoDEDenoiser):
                return self.denoiser(x_in, feat, cond, levels.prepared[i])
            return (self._fast[0] if self._fast else self.denoiser)(x_in, feat, cond)

        return net


class _ChunkSampler(torch.nn.Module):
    """`policy._sample_chunk(obs, noise)` at a fixed schedule, as a module for torch.jit.trace."""

    def __init__(self, policy: ScorePolicy, nfe: int | None) -> None:
        super().__init__()
        self.policy, self.nfe = policy, nfe

    def forward(self, obs: Tensor, noise: Tensor) -> Tensor:
        return self.policy._sample_chunk(obs, noise, None, self.nfe, None)


class _ConditionSampler(torch.nn.Module):
    """`policy.predict_from_condition(cond, noise)` at a fixed schedule, as a module for torch.jit.trace."""

    def __init__(self, policy: ScorePolicy, nfe: int | None) -> None:
        super().__init__()
        self.policy, self.nfe = policy, nfe

    def forward(self, cond: Tensor, noise: Tensor) -> Tensor:
        return self.policy._run_sampler([cond], noise, self.nfe, None, unrolled=False)


class _ExportChunk(torch.nn.Module):
    """`policy._sample_chunk` unrolled at a fixed schedule, with the goal as tensors: for torch.export."""

    def __init__(self, policy: ScorePolicy, nfe: int | None) -> None:
        super().__init__()
        self.policy, self.nfe = policy, nfe
        self.goal_inputs = policy.graph_goal_inputs()

    def forward(
        self, obs: Tensor, noise: Tensor, task: Tensor | None = None, goal: Tensor | None = None
    ) -> Tensor:
        given = {"task": task, "goal": goal}
        explicit: Goal | None = {k: given[k] for k in self.goal_inputs} or None
        return self.policy._sample_chunk(obs, noise, explicit, self.nfe, None, unrolled=True)


__all__ = ["DiffusionConfig", "PolicyConfig", "ScorePolicy", "read_policy_config"]
