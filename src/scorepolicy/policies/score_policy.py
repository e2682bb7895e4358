"""ScorePolicy: normaliser + observation encoder + denoiser + EDM diffusion, with a LeRobot-style API."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections import deque
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from scorepolicy.diffusion import (
    edm_denoise,
    edm_loss,
    edm_precond,
    get_sampler,
    get_sigmas,
    sample_log_logistic,
    sample_log_normal,
    sample_log_uniform,
    steps_for_nfe,
)
from scorepolicy.diffusion.edm import RawNet
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import (
    atomic_save_tensors,
    atomic_write_json,
    from_dict,
    load_tensors,
    read_json,
    to_dict,
)
from scorepolicy.models import MLPDenoiser, TransformerDenoiser
from scorepolicy.policies.config import DiffusionConfig, PolicyConfig

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)
FORMAT = "scorepolicy/score-policy"
FORMAT_VERSION = 1


Denoiser = MLPDenoiser | TransformerDenoiser


def build_denoiser(cfg: PolicyConfig) -> Denoiser:
    """The denoiser network named by the config."""
    args = (cfg.obs_dim, cfg.n_obs_steps, cfg.action_dim, cfg.horizon)
    if cfg.denoiser == "mlp":
        return MLPDenoiser(cfg.mlp, *args)
    return TransformerDenoiser(cfg.transformer, *args)


def check_config(cfg: PolicyConfig, where: str = "config") -> None:
    """One-line errors for inconsistent settings."""
    if cfg.obs_dim < 1 or cfg.action_dim < 1:
        raise ScorePolicyError(f"{where}: obs_dim and action_dim must be positive (fill them from the data)")
    if not 1 <= cfg.n_action_steps <= cfg.horizon:
        raise ScorePolicyError(f"{where}: n_action_steps must be in 1..horizon ({cfg.horizon})")
    d = cfg.diffusion
    if not 0 < d.sigma_min < d.sigma_max:
        raise ScorePolicyError(f"{where}: need 0 < diffusion.sigma_min < diffusion.sigma_max")
    steps_for_nfe(d.sampler, d.nfe)


class ScorePolicy(nn.Module):
    """A score-based diffusion policy over action chunks (BESO-style: EDM preconditioning, few steps)."""

    obs_min: Tensor
    obs_max: Tensor
    action_min: Tensor
    action_max: Tensor

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        check_config(cfg)
        self.cfg = cfg
        self.denoiser: Denoiser = build_denoiser(cfg)
        for name, dim in (("obs", cfg.obs_dim), ("action", cfg.action_dim)):
            self.register_buffer(f"{name}_min", -torch.ones(dim))
            self.register_buffer(f"{name}_max", torch.ones(dim))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self._fast: list[Any] = []  # a frozen TorchScript copy of the denoiser (not a registered submodule)
        self._schedules: dict[tuple[Any, ...], tuple[Tensor, dict[float, Tensor]]] = {}
        self._obs_history: deque[Tensor] = deque(maxlen=cfg.n_obs_steps)
        self._action_queue: deque[Tensor] = deque()

    # ---------------------------------------------------------------- normalisation
    def set_normalization(self, stats: dict[str, dict[str, np.ndarray]]) -> None:
        """Set min/max statistics for 'obs' and 'action' (each {'min': (d,), 'max': (d,)})."""
        for name in ("obs", "action"):
            for key in ("min", "max"):
                getattr(self, f"{name}_{key}").copy_(torch.as_tensor(stats[name][key], dtype=torch.float32))
        check_normalization(self, "normalisation statistics")

    def _scale(self, name: str) -> tuple[Tensor, Tensor]:
        lo, hi = getattr(self, f"{name}_min"), getattr(self, f"{name}_max")
        half = ((hi - lo) / 2).clamp_min(1e-6)
        return (hi + lo) / 2, half

    def normalize(self, name: str, x: Tensor) -> Tensor:
        """Map raw values to [−1, 1] with the stored min/max (constant dimensions map to 0)."""
        mid, half = self._scale(name)
        return (x - mid) / half

    def unnormalize(self, name: str, x: Tensor) -> Tensor:
        """Inverse of `normalize`."""
        mid, half = self._scale(name)
        return x * half + mid

    # ---------------------------------------------------------------- training
    def sample_training_sigmas(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Noise levels from the configured training density."""
        d = self.cfg.diffusion
        if d.train_density == "lognormal":
            return sample_log_normal(n, d.p_mean, d.p_std, d.sigma_min, d.sigma_max, generator)
        if d.train_density == "loglogistic":
            loc = math.log(d.sigma_data)
            return sample_log_logistic(n, loc, d.loglogistic_scale, d.sigma_min, d.sigma_max, generator)
        return sample_log_uniform(n, d.sigma_min, d.sigma_max, generator)

    def compute_loss(
        self, batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """EDM denoising loss on a batch {'obs': (B, T_o, d_o), 'action': (B, T_p, d_a)} of raw values."""
        obs = self.normalize("obs", batch["obs"])
        x0 = self.normalize("action", batch["action"])
        b = x0.shape[0]
        sigma = self.sample_training_sigmas(b, generator)
        noise = torch.randn(x0.shape, generator=generator)
        cond = self.denoiser.encode(obs)

        def net(x_in: Tensor, c_noise: Tensor) -> Tensor:
            return self.denoiser(x_in, self.denoiser.sigma_features(c_noise), cond)

        per_sample = edm_loss(net, x0, sigma, noise, self.cfg.diffusion.sigma_data)
        loss = per_sample.mean()
        return loss, {"loss": float(loss.detach())}

    # ---------------------------------------------------------------- inference
    def sigmas(self, nfe: int | None = None) -> Tensor:
        """The sampling schedule for `nfe` denoiser calls (default: the config's)."""
        d = self.cfg.diffusion
        steps = steps_for_nfe(d.sampler, nfe or d.nfe)
        top = d.sample_sigma_max or d.sigma_max
        return get_sigmas(d.schedule, steps, d.sigma_min, top, d.rho, d.terminal)

    @torch.inference_mode()
    def predict_action_chunk(
        self, obs: Tensor, *, nfe: int | None = None, noise: Tensor | None = None
    ) -> Tensor:
        """Raw actions (B, T_p, d_a) for raw observation histories (B, T_o, d_o).

        `noise` (B, T_p, d_a), if given, is the standard-normal initial noise (for noise-space RL).
        """
        cfg = self.cfg
        self._check_obs(obs, (cfg.n_obs_steps, cfg.obs_dim))
        cond = self.denoiser.encode(self.normalize("obs", obs.float()))
        sigmas, table = self._schedule(nfe)
        shape = (obs.shape[0], cfg.horizon, cfg.action_dim)
        if noise is None:
            noise = torch.randn(shape, generator=self.generator)
        elif tuple(noise.shape) != shape:
            raise ScorePolicyError(f"noise: expected shape {shape}, got {tuple(noise.shape)}")
        net = self._schedule_net(table, cond)

        def denoise(x: Tensor, sigma: Tensor) -> Tensor:
            return edm_denoise(net, x, sigma, cfg.diffusion.sigma_data)

        x = get_sampler(cfg.diffusion.sampler)(denoise, noise * sigmas[0], sigmas, generator=self.generator)
        return self.unnormalize("action", x.clamp(-1.0, 1.0))

    def optimize_for_inference(self) -> ScorePolicy:
        """Freeze a TorchScript copy of the denoiser's forward (about 2× faster at batch 1 on a CPU).

        The copy holds the current weights as constants; `train()` and `load_state_dict` drop it.
        """
        cfg = self.cfg
        self.eval()
        self._schedules.clear()
        obs = torch.zeros(2, cfg.n_obs_steps, cfg.obs_dim)
        with torch.no_grad():
            cond = self.denoiser.encode(obs)
            feat = self.denoiser.sigma_features(torch.zeros(1))
            x = torch.zeros(2, cfg.horizon, cfg.action_dim)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # tracer and deprecation notices of torch.jit
                    traced = torch.jit.trace(self.denoiser, (x, feat, cond), check_trace=False)
                    self._fast[:] = [torch.jit.optimize_for_inference(torch.jit.freeze(traced))]
            except Exception as e:  # a torch without TorchScript: stay on the eager path
                warnings.warn(
                    f"optimize_for_inference unavailable ({e}); using eager inference", stacklevel=2
                )
                self._fast.clear()
        return self

    def train(self, mode: bool = True) -> ScorePolicy:
        if mode:
            self._fast.clear()
            self._schedules.clear()
        return super().train(mode)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self._fast.clear()
        self._schedules.clear()
        return super().load_state_dict(*args, **kwargs)

    def _schedule(self, nfe: int | None) -> tuple[Tensor, dict[float, Tensor]]:
        """The σ schedule and the σ features of its levels; cached while the weights are frozen."""
        d = self.cfg.diffusion
        key = (nfe or d.nfe, *dataclasses.astuple(d))
        if key in self._schedules:
            return self._schedules[key]
        sigmas = self.sigmas(nfe)
        c_noise = edm_precond(sigmas[sigmas > 0], d.sigma_data).c_noise
        feats = self.denoiser.sigma_features(c_noise)
        table = {float(c): feats[i : i + 1] for i, c in enumerate(c_noise)}
        if self._fast:
            self._schedules[key] = (sigmas, table)
        return sigmas, table

    def _schedule_net(self, table: dict[float, Tensor], cond: Tensor) -> RawNet:
        """The raw network reading precomputed σ features for the levels of the schedule."""

        def net(x_in: Tensor, c: Tensor) -> Tensor:
            feat = table.get(float(c[0]))
            if feat is None:  # a level off the schedule (not used by the built-in samplers)
                feat = self.denoiser.sigma_features(c[:1])
            return forward(x_in, feat, cond)

        forward = self._fast[0] if self._fast else self.denoiser
        return net

    def reset(self, seed: int | None = None) -> None:
        """Forget the observation history and queued actions (call at every episode start)."""
        self._obs_history.clear()
        self._action_queue.clear()
        if seed is not None:
            self.generator.manual_seed(seed)

    def select_action(self, obs: ArrayT) -> ArrayT:
        """One action per env for observations (B, d_o) or (d_o,); re-plans every n_action_steps."""
        is_numpy = isinstance(obs, np.ndarray)
        o = torch.as_tensor(np.asarray(obs, dtype=np.float32) if is_numpy else obs, dtype=torch.float32)
        single = o.ndim == 1
        o = o.reshape(1, -1) if single else o
        self._check_obs(o, (self.cfg.obs_dim,))
        if self._obs_history and self._obs_history[-1].shape[0] != o.shape[0]:
            raise ScorePolicyError("select_action: batch size changed without reset(); call policy.reset()")
        if not self._obs_history:
            self._obs_history.extend([o] * self.cfg.n_obs_steps)
        else:
            self._obs_history.append(o)
        if not self._action_queue:
            chunk = self.predict_action_chunk(torch.stack(list(self._obs_history), dim=1))
            self._action_queue.extend(chunk[:, : self.cfg.n_action_steps].unbind(dim=1))
        action = self._action_queue.popleft()
        action = action[0] if single else action
        return action.numpy() if is_numpy else action  # type: ignore[return-value]

    def _check_obs(self, obs: Tensor, tail: tuple[int, ...]) -> None:
        if tuple(obs.shape[1:]) != tail:
            raise ScorePolicyError(
                f"observation: expected shape (batch, {', '.join(map(str, tail))}), got {tuple(obs.shape)}; "
                f"the policy was trained on observations of size {self.cfg.obs_dim}"
            )
        if not torch.isfinite(obs).all():
            raise ScorePolicyError("observation: contains NaN or inf; check the sensor/env output")

    # ---------------------------------------------------------------- save / load
    def save_pretrained(self, directory: str | Path, state_dict: dict[str, Tensor] | None = None) -> None:
        """Write `model.safetensors` (the given weights, e.g. EMA; default: this module's) and `config.json`."""
        directory = Path(directory)
        atomic_save_tensors(directory / "model.safetensors", state_dict or self.state_dict())
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "policy": to_dict(self.cfg)}
        atomic_write_json(directory / "config.json", meta)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ScorePolicy:
        """Load a policy saved by `save_pretrained` (safetensors + JSON; nothing is unpickled)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ScorePolicyError(
                f"{directory}: no such run directory; pass the --out folder of a training run"
            )
        cfg = read_policy_config(directory / "config.json")
        policy = cls(cfg)
        tensors = load_tensors(directory / "model.safetensors")
        expected = policy.state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            name = (missing or unexpected)[0]
            kind = "missing" if missing else "unexpected"
            raise ScorePolicyError(
                f"{directory / 'model.safetensors'}: {kind} tensor '{name}'; the weights do not match config.json"
            )
        for k, v in tensors.items():
            if v.shape != expected[k].shape:
                raise ScorePolicyError(
                    f"{directory / 'model.safetensors'}: tensor '{k}' has shape {tuple(v.shape)}, "
                    f"config.json implies {tuple(expected[k].shape)}"
                )
        policy.load_state_dict(tensors)
        check_normalization(policy, str(directory / "model.safetensors"))
        return policy.eval()


def read_policy_config(path: Path) -> PolicyConfig:
    """Parse and check a run's config.json."""
    meta: Any = read_json(path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "policy" not in meta:
        raise ScorePolicyError(f"{path}: not a scorepolicy config (field 'format' must be '{FORMAT}')")
    cfg = from_dict(PolicyConfig, meta["policy"], f"{path}: policy")
    check_config(cfg, str(path))
    return cfg


def check_normalization(policy: ScorePolicy, where: str) -> None:
    """Normalisation statistics must be finite with max ≥ min."""
    for name in ("obs", "action"):
        lo, hi = getattr(policy, f"{name}_min"), getattr(policy, f"{name}_max")
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()) or bool((hi < lo).any()):
            raise ScorePolicyError(
                f"{where}: invalid {name} normalisation statistics (non-finite or max < min)"
            )


__all__ = ["DiffusionConfig", "PolicyConfig", "ScorePolicy"]
