"""ChunkPolicy: what every policy family shares (normaliser, goals, observation history, action queue,
save/load); the families (score policy, baselines) add `compute_loss` and `predict_action_chunk`."""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import warnings
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from scorepolicy.devices import resolve_device
from scorepolicy.diffusion.random import (
    NoiseSource,
    RowGenerators,
    TrainNoise,
    bernoulli,
    generator_device,
    make_generator,
    randn,
)
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import (
    atomic_save_tensors,
    atomic_write_json,
    from_dict,
    load_tensors,
    read_json,
)
from scorepolicy.models import (
    GoalEncoder,
    ImageEncoder,
    MLPDenoiser,
    MoDEDenoiser,
    TransformerDenoiser,
    UNet1DDenoiser,
)
from scorepolicy.policies.acting import Goal, next_queued_action, select_from_dict
from scorepolicy.policies.config import PolicyConfig
from scorepolicy.policies.images import Crop, Frames, split_input

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)
FORMAT = "scorepolicy/score-policy"
FORMAT_VERSION = 1

Denoiser = MLPDenoiser | TransformerDenoiser | MoDEDenoiser | UNet1DDenoiser


def feature_width(cfg: PolicyConfig) -> int:
    """Width of one observation step as the denoiser sees it: the state (without goal entries) and, for
    image policies, every camera's features."""
    return cfg.obs_dim - cfg.goal.obs_width + len(cfg.image_shapes) * cfg.vision.feature_dim


def build_denoiser(cfg: PolicyConfig) -> Denoiser:
    """The denoiser network named by the config."""
    args = (feature_width(cfg), cfg.n_obs_steps, cfg.action_dim, cfg.horizon)
    if cfg.denoiser == "mlp":
        return MLPDenoiser(cfg.mlp, *args)
    if cfg.denoiser == "mode":
        return MoDEDenoiser(cfg.mode, *args)
    if cfg.denoiser == "unet1d":
        return UNet1DDenoiser(cfg.unet1d, *args)
    return TransformerDenoiser(cfg.transformer, *args)


def check_base_config(cfg: PolicyConfig, where: str) -> None:
    """One-line errors for the config's ranges (checked by its class) and for sizes not yet taken from data."""
    cfg.validate(f"{where}: ")
    if cfg.obs_dim - cfg.goal.obs_width < 1 or cfg.action_dim < 1:
        raise ScorePolicyError(f"{where}: obs_dim and action_dim must be positive (fill them from the data)")


class ChunkPolicy(nn.Module, metaclass=abc.ABCMeta):
    """A policy over action chunks with a LeRobot-style interface (select_action, reset, save/load).

    Abstract: a family subclasses it, implements `compute_loss` and `predict_action_chunk`, names its config
    class (`config_class`) and registers itself by kind (`@register_policy("kind")`, policies/registry.py).
    """

    kind: ClassVar[str] = ""
    takes_images: ClassVar[bool] = False
    """Whether the family conditions on camera frames (configs with image_shapes)."""
    config_class: ClassVar[type[PolicyConfig]] = PolicyConfig
    """The family's config class: what it validates and saves to config.json."""
    obs_min: Tensor
    obs_max: Tensor
    action_min: Tensor
    action_max: Tensor

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        cfg = self.family_config(cfg)
        self.check_config(cfg)
        self.cfg = cfg
        if cfg.image_shapes and not self.takes_images:
            raise ScorePolicyError(
                f"policy.kind '{cfg.kind}' does not take camera images; use kind 'score' for image tasks"
            )
        self.denoiser: Denoiser = build_denoiser(cfg)
        self.image_encoder = ImageEncoder(cfg.vision, cfg.image_shapes) if cfg.image_shapes else None
        g = cfg.goal
        self.goal_encoder = (
            GoalEncoder(g.n_tasks, g.goal_dim, self.denoiser.goal_width) if g.enabled else None
        )
        for name, dim in self.normalized_fields().items():
            self.register_buffer(f"{name}_min", -torch.ones(dim))
            self.register_buffer(f"{name}_max", torch.ones(dim))
        self._noise_seed = cfg.seed  # the seed of `generator` (it is re-made when the policy changes device)
        self.generator = make_generator(cfg.seed)
        self._row_generators: RowGenerators | None = None  # one noise stream per batch row, if set
        self._noise_override: NoiseSource | None = None  # set inside `noise_from`
        self._frozen = False  # weights frozen for inference: caches below are valid
        self._fast: list[Any] = []  # a frozen TorchScript copy of the denoiser (not a registered submodule)
        self._scales: dict[str, tuple[Tensor, Tensor]] = {}  # normalisation scales, while frozen
        self._obs_history: deque[Tensor] = deque(maxlen=cfg.n_obs_steps)
        self._action_queue: deque[Tensor] = deque()
        self._goal: Goal | None = None

    @classmethod
    def family_config(cls, cfg: PolicyConfig) -> PolicyConfig:
        """`cfg` as this family's config class, with the sections it does not use at their defaults (so that
        a saved and reloaded config equals the original); used sections are shared, not copied."""
        defaults = cls.config_class()  # a family's config class defaults `kind` to the family's
        fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        family = cls.config_class(**{**fields, "kind": defaults.kind})
        used = family.used_dict().keys()
        unused = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(family) if f.name not in used}
        family = dataclasses.replace(family, **unused)
        return cfg if family == cfg and type(cfg) is cls.config_class else family

    @classmethod
    def check_config(cls, cfg: PolicyConfig, where: str = "config") -> None:
        """One-line errors for inconsistent settings, checked by the family's config class."""
        check_base_config(cls.family_config(cfg), where)

    @property
    def device(self) -> torch.device:
        """The device of the policy's weights: inputs, noise and generators follow it."""
        return self.obs_min.device

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        """Module.to/cuda/...; the noise generators move along (re-seeded: each device has its own RNG)."""
        out = super()._apply(fn, recurse)
        if self.generator.device != generator_device(self.device):
            self.generator = make_generator(self._noise_seed, self.device)
        if self._row_generators is not None and self._row_generators.device != self.device:
            self._row_generators = RowGenerators(self._row_generators.seeds, self.device)
        return out

    def normalized_fields(self) -> dict[str, int]:
        """Fields with min/max normalisation statistics and their sizes."""
        fields = {"obs": self.cfg.obs_dim - self.cfg.goal.obs_width, "action": self.cfg.action_dim}
        if self.cfg.goal.goal_dim > 0:
            fields["goal"] = self.cfg.goal.goal_dim
        return fields

    # ---------------------------------------------------------------- normalisation
    def set_normalization(self, stats: dict[str, dict[str, np.ndarray]]) -> None:
        """Set min/max statistics per field ('obs', 'action', and 'goal' for goal vectors)."""
        self._drop_statistics_caches()
        for name in self.normalized_fields():
            if name not in stats:
                raise ScorePolicyError(f"normalisation statistics: field '{name}' missing")
            for key in ("min", "max"):
                getattr(self, f"{name}_{key}").copy_(torch.as_tensor(stats[name][key], dtype=torch.float32))
        check_normalization(self, "normalisation statistics")

    def _drop_statistics_caches(self) -> None:
        """Forget what was computed from the normalisation statistics (they are about to change)."""
        self._scales.clear()

    def _scale(self, name: str) -> tuple[Tensor, Tensor]:
        """(mid, half-range) of a field; kept while frozen for inference (the statistics cannot change)."""
        if name in self._scales:
            return self._scales[name]
        lo, hi = getattr(self, f"{name}_min"), getattr(self, f"{name}_max")
        scale = (hi + lo) / 2, ((hi - lo) / 2).clamp_min(1e-6)
        if self._frozen:
            self._scales[name] = scale
        return scale

    def normalize(self, name: str, x: Tensor) -> Tensor:
        """Map raw values to [−1, 1] with the stored min/max (constant dimensions map to 0)."""
        mid, half = self._scale(name)
        return (x - mid) / half

    def unnormalize(self, name: str, x: Tensor) -> Tensor:
        """Inverse of `normalize`."""
        mid, half = self._scale(name)
        return x * half + mid

    # ---------------------------------------------------------------- conditioning
    def augment_observations(
        self, batch: dict[str, Tensor], generator: TrainNoise | None
    ) -> dict[str, Tensor]:
        """The training batch with cfg.obs_noise × half-range Gaussian noise on the observed state
        (goal entries untouched); unchanged, and no random numbers drawn, when off or not training."""
        if self.cfg.obs_noise <= 0 or not self.training:
            return batch
        obs, n = batch["obs"], self.cfg.goal.obs_width
        state = obs[..., : obs.shape[-1] - n]
        noise = randn(state.shape, generator, device=state.device) * (
            self.cfg.obs_noise * self._scale("obs")[1]
        )
        return {**batch, "obs": torch.cat([state + noise, obs[..., state.shape[-1] :]], dim=-1)}

    def split_input(
        self, obs: Tensor | Mapping[str, Any], steps: tuple[int, ...]
    ) -> tuple[Tensor, Frames | None]:
        """An observation as (state, camera frames) on the policy's device: a tensor for state-only
        policies, a dict {"state", camera keys} for image policies; `steps` are the leading dimensions after
        the batch, (T_o,) for histories or () for one step. Missing or unexpected keys, wrong frame shapes
        or dtypes are refused with a one-line error naming the key, the shape received and the expected one."""
        state, frames = split_input(obs, self.cfg.image_shapes, steps, self.device)
        self._check_obs(state, (*steps, self.cfg.obs_dim))
        return state.to(self.device), frames

    def observation_features(self, state: Tensor, images: Frames | None, crop: Crop | None = None) -> Tensor:
        """What the denoiser sees per observation step: normalised raw states (B, T_o, d_o) and, for image
        policies, the features of the frames {key: uint8 (B, T_o, H, W, 3)} (random crops from `crop`
        in training mode, centre crops otherwise)."""
        obs = self.normalize("obs", state)
        if self.image_encoder is None:
            return obs
        if images is None:
            keys = ", ".join(self.image_encoder.keys)
            raise ScorePolicyError(
                f"observation: this policy conditions on camera frames ({keys}); none given"
            )
        return torch.cat([obs, self.image_encoder(images, crop)], dim=-1)

    def split_observation(self, obs: Tensor, goal: Goal | None = None) -> tuple[Tensor, Goal | None]:
        """Raw observation histories (B, T_o, obs_dim) → (the observation part, the goal).

        With goal.from_observation the goal is read from the last step's trailing entries, unless an
        explicit `goal` is given.
        """
        n = self.cfg.goal.obs_width
        if n == 0:
            return obs, goal
        state, tail = obs[..., :-n], obs[:, -1, -n:]
        if goal is not None:
            return state, goal
        found: Goal = {}
        if self.cfg.goal.n_tasks > 0:
            found["task"], tail = tail[:, 0].round().long(), tail[:, 1:]
        if self.cfg.goal.goal_dim > 0:
            found["goal"] = tail
        return state, found

    def goal_keep_mask(self, batch: int, generator: TrainNoise | None) -> Tensor:
        """Per-sample 1 (keep) / 0 (drop) for goal dropout during training."""
        return bernoulli((batch,), 1.0 - self.cfg.goal.dropout, generator, self.device)

    def condition(
        self,
        obs: Tensor,
        goal: Goal | None,
        *,
        keep: Tensor | None = None,
        element_keep: Tensor | None = None,
    ) -> Tensor:
        """The denoiser condition for normalised observations (B, T_o, d_o) and a raw goal (None = null goal).

        `keep` (B,) drops whole goals; `element_keep` (B, goal_dim) zeroes normalised goal elements.
        """
        if self.goal_encoder is None:
            return self.denoiser.encode(obs)
        if goal is None:
            return self.denoiser.encode(obs, obs.new_zeros(obs.shape[0], self.goal_encoder.dim))
        task, vec = self.goal_tensors(goal, obs.shape[0])
        if vec is not None and element_keep is not None:
            vec = vec * element_keep
        return self.denoiser.encode(obs, self.goal_encoder(task, vec, keep))

    def goal_tensors(self, goal: Goal, batch: int) -> tuple[Tensor | None, Tensor | None]:
        """Checked task ids (B,) and normalised goal vectors (B, goal_dim) from a raw goal."""
        g = self.cfg.goal
        task = vec = None
        if g.n_tasks > 0:
            if goal.get("task") is None:
                raise ScorePolicyError(
                    f"goal: field 'task' missing; this policy needs task ids 0..{g.n_tasks - 1}"
                )
            task = torch.as_tensor(goal["task"], device=self.device).reshape(-1).long()
            task = task.expand(batch) if task.numel() == 1 else task
            checked = not torch.compiler.is_exporting()  # a graph cannot raise: its caller checks values
            if checked and (task.shape[0] != batch or _any((task < 0) | (task >= g.n_tasks))):
                raise ScorePolicyError(f"goal: 'task' must be {batch} ids in 0..{g.n_tasks - 1}")
        if g.goal_dim > 0:
            if goal.get("goal") is None:
                raise ScorePolicyError(
                    f"goal: field 'goal' missing; this policy needs goal vectors of size {g.goal_dim}"
                )
            self._check_goal_size(goal)
            given = goal["goal"]
            raw = (
                given.float() if isinstance(given, Tensor) else torch.as_tensor(np.asarray(given, np.float32))
            )
            raw = raw.to(self.device).reshape(-1, g.goal_dim)
            if raw.shape[0] == 1 and batch > 1:
                raw = raw.expand(batch, -1)
            checked = not torch.compiler.is_exporting()
            if checked and (raw.shape[0] != batch or _any(~torch.isfinite(raw))):
                raise ScorePolicyError(f"goal: 'goal' must be finite, of shape ({batch}, {g.goal_dim})")
            vec = self.normalize("goal", raw)
        return task, vec

    def _check_goal_size(self, goal: Goal) -> None:
        """A goal vector of the wrong size names the expected one."""
        g = self.cfg.goal
        if g.goal_dim > 0 and goal.get("goal") is not None:
            value = goal["goal"]
            size = (value if isinstance(value, Tensor) else np.asarray(value)).shape[-1]
            if size != g.goal_dim:
                raise ScorePolicyError(f"goal: expected goal vectors of size {g.goal_dim}, got size {size}")

    @torch.inference_mode()
    def observation_embedding(self, obs: Tensor | Frames, goal: Goal | None = None) -> Tensor:
        """What the denoiser is conditioned on, (B, F), for raw observation histories (B, T_o, d_o) (and a
        goal, as in `predict_action_chunk`): the policy's own observation embedding."""
        raw, images = self.split_input(obs, (self.cfg.n_obs_steps,))
        state, found = self.split_observation(raw.float(), goal)
        return self.condition(self.observation_features(state, images), found or None)

    # ---------------------------------------------------------------- interface for families
    @abc.abstractmethod
    def compute_loss(
        self, batch: dict[str, Tensor], generator: TrainNoise | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Training loss on a batch of raw values {'obs', 'action'[, 'task', 'goal']} on the policy's device."""

    @abc.abstractmethod
    def predict_action_chunk(self, obs: Tensor, *, goal: Goal | None = None) -> Tensor:
        """Raw actions (B, T_p, d_a) for raw observation histories (B, T_o, d_o) (and a goal)."""

    # ---------------------------------------------------------------- inference speed
    def optimize_for_inference(self) -> ChunkPolicy:
        """Freeze the weights for inference: caches become valid, and on a CPU the MLP/transformer forward
        is replaced by a frozen TorchScript copy (about 2× faster at batch 1; other devices run eagerly).

        `train()` and `load_state_dict` undo it.
        """
        cfg = self.cfg
        self.eval()
        self._clear_caches()
        self._frozen = True
        if cfg.denoiser == "mode" or self.device.type != "cpu":
            return self  # MoDE's speed-up is its per-step expert cache, kept by the family
        with torch.no_grad():
            cond = self.condition(torch.zeros(2, cfg.n_obs_steps, feature_width(cfg)), None)
            feat = self.denoiser.sigma_features(torch.zeros(1))
            x = torch.zeros(2, cfg.horizon, cfg.action_dim)
            fast = frozen_trace(self.denoiser, (x, feat, cond), "optimize_for_inference", "eager inference")
        self._fast[:] = [fast] if fast is not None else []
        return self

    def inference_path(self) -> str:
        """How `predict_action_chunk` runs now: 'torch-denoiser-graph' (the denoiser as a frozen TorchScript
        graph, after `optimize_for_inference`) or 'torch-eager'."""
        return "torch-denoiser-graph" if self._fast else "torch-eager"

    def _clear_caches(self) -> None:
        self._frozen = False
        self._fast.clear()
        self._scales.clear()

    def train(self, mode: bool = True) -> ChunkPolicy:
        if mode:
            self._clear_caches()
        return super().train(mode)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self._clear_caches()
        return super().load_state_dict(*args, **kwargs)

    # ---------------------------------------------------------------- sampling noise
    @property
    def noise_source(self) -> NoiseSource:
        """Where sampling noise comes from: the source of an enclosing `noise_from` block, per-row generators
        after `reset(seeds=...)`, else `generator`."""
        if self._noise_override is not None:
            return self._noise_override
        return self._row_generators if self._row_generators is not None else self.generator

    @contextlib.contextmanager
    def noise_from(self, source: NoiseSource) -> Iterator[None]:
        """Draw every sampling noise (initial and sampler steps) from `source` inside the block, leaving the
        policy's own streams untouched (e.g. extra samples of a monitor)."""
        saved, self._noise_override = self._noise_override, source
        try:
            yield
        finally:
            self._noise_override = saved

    def initial_noise(self, batch: int) -> Tensor:
        """The standard-normal initial noise (batch, T_p, d_a) the policy's next chunk would start from
        (drawn from `noise_source`; pass it back as `predict_action_chunk(obs, noise=...)`)."""
        rows = self.noise_source
        if isinstance(rows, RowGenerators) and len(rows) != batch:
            raise ScorePolicyError(
                f"sampling noise: reset(seeds=...) gave {len(rows)} rows but the batch has {batch}; "
                "call policy.reset(seeds=...) with one seed per batch row"
            )
        return randn((batch, self.cfg.horizon, self.cfg.action_dim), self.noise_source, device=self.device)

    # ---------------------------------------------------------------- acting
    def reset(
        self, seed: int | None = None, goal: Goal | None = None, *, seeds: Sequence[int] | None = None
    ) -> None:
        """Start new episodes: forget history and queued actions; set the goal used by select_action.

        `seed` reseeds the one noise stream of the whole batch; `seeds` gives each batch row its own
        stream instead (row i seeded with seeds[i]), so a row's actions do not depend on the batch size.
        With neither, the current noise streams continue.
        """
        if seed is not None and seeds is not None:
            raise ScorePolicyError("reset: pass seed (one stream) or seeds (one per row), not both")
        self._obs_history.clear()
        self._action_queue.clear()
        if goal is not None:
            self._check_goal_size(goal)
        self._goal = goal
        if seed is not None:
            self._noise_seed = seed
            self.generator.manual_seed(seed)
            self._row_generators = None
        elif seeds is not None:
            self._row_generators = RowGenerators(seeds, self.device)

    def select_action(self, obs: ArrayT | Mapping[str, ArrayT], goal: Goal | None = None) -> ArrayT:
        """One action per env for observations (B, d_o) or (d_o,); re-plans every n_action_steps.

        Image policies take a dict {"state": (B, d_o) or (d_o,), camera key: uint8 (B, H, W, 3) or (H, W, 3)}.
        `goal` overrides the goal given to `reset` (goal-conditioned policies). The action comes back as
        the observation came in: a numpy array, or a tensor on the observation's device.
        """
        if isinstance(obs, Mapping) or self.image_encoder is not None:
            return select_from_dict(self, obs, goal)
        is_numpy = isinstance(obs, np.ndarray)
        o = torch.as_tensor(np.asarray(obs, dtype=np.float32) if is_numpy else obs, dtype=torch.float32)
        single, where = o.ndim == 1, o.device
        o = o.reshape(1, -1) if single else o
        self._check_obs(o, (self.cfg.obs_dim,))
        o = o.to(self.device)
        action = next_queued_action(self, o, goal)
        action = action[0] if single else action
        return action.cpu().numpy() if is_numpy else action.to(where)  # type: ignore[return-value]

    @property
    def queued_actions(self) -> int:
        """Actions already planned: the next this many `select_action` calls (same batch size) only pop
        them, without running the denoiser (what lets a server answer them without a thread hop)."""
        return len(self._action_queue)

    def _check_obs(self, obs: Tensor, tail: tuple[int, ...]) -> None:
        if tuple(obs.shape[1:]) != tail:
            raise ScorePolicyError(
                f"observation: expected shape (batch, {', '.join(map(str, tail))}), got {tuple(obs.shape)}; "
                f"the policy was trained on observations of size {self.cfg.obs_dim}"
            )
        if _any(~torch.isfinite(obs)):
            raise ScorePolicyError("observation: contains NaN or inf; check the sensor/env output")

    # ---------------------------------------------------------------- save / load
    def save_pretrained(self, directory: str | Path, state_dict: dict[str, Tensor] | None = None) -> None:
        """Write `model.safetensors` (the given weights, e.g. EMA; default: this module's) and `config.json`."""
        directory = Path(directory)
        atomic_save_tensors(directory / "model.safetensors", state_dict or self.state_dict())
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "policy": self.cfg.used_dict()}
        atomic_write_json(directory / "config.json", meta)

    @classmethod
    def from_pretrained(
        cls: type[PolicyT], directory: str | Path, device: str | torch.device = "cpu"
    ) -> PolicyT:
        """Load a policy saved by `save_pretrained` (safetensors + JSON; nothing is unpickled).

        Called on ChunkPolicy it returns the family named in config.json. The weights are read on the CPU,
        then the policy moves to `device` (auto: CUDA when available).
        """
        from scorepolicy.policies.registry import improved_policy_class

        target = resolve_device(device)
        if target.type != "cpu" and improved_policy_class(Path(directory)) is not None:
            raise ScorePolicyError(f"{directory}: RL-improved policies run on the CPU only; use --device cpu")
        policy = cls._load_pretrained(directory)
        return policy if target.type == "cpu" else policy.to(target)

    @classmethod
    def _load_pretrained(cls: type[PolicyT], directory: str | Path) -> PolicyT:
        """`from_pretrained` on the CPU."""
        from scorepolicy.policies.registry import improved_policy_class, policy_class

        directory = Path(directory)
        if not directory.is_dir():
            raise ScorePolicyError(
                f"{directory}: no such run directory; pass the --out folder of a training run"
            )
        improved = improved_policy_class(directory)
        if improved is not None:  # an RL-improved policy (a frozen base + a small learned part)
            return improved.from_pretrained(directory)
        cfg = read_policy_config(directory / "config.json")
        family = policy_class(cfg.kind)
        if not issubclass(family, cls):
            raise ScorePolicyError(
                f"{directory}: holds a '{cfg.kind}' policy, not a {cls.__name__}; load it with scorepolicy.load_policy"
            )
        policy = family(cfg)
        load_checked(policy, directory / "model.safetensors")
        return policy.eval()


PolicyT = TypeVar("PolicyT", bound=ChunkPolicy)


def scalar(value: Tensor) -> float:
    """A one-element tensor as a float for logs (NaN on torch's `meta` device, which holds no values)."""
    return float("nan") if value.device.type == "meta" else float(value.detach())


def _any(mask: Tensor) -> bool:
    """Whether any entry of a boolean tensor is set (False on torch's `meta` device, which holds no values)."""
    return mask.device.type != "meta" and bool(mask.any())


def frozen_trace(
    module: nn.Module, example: tuple[Tensor, ...], what: str, fallback: str
) -> torch.jit.ScriptModule | None:
    """`module` traced at `example`, frozen (weights as constants) and optimised for inference; None,
    with a warning naming `what` and the `fallback` used instead, where TorchScript fails."""
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation notices of torch.jit
            traced = torch.jit.trace(module.eval(), example, check_trace=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    except Exception as e:  # a torch without TorchScript
        warnings.warn(f"{what} unavailable ({e}); using {fallback}", stacklevel=3)
        return None


def load_checked(policy: ChunkPolicy, path: Path) -> None:
    """Load weights whose names and shapes must match the policy's; then check the normaliser."""
    tensors = load_tensors(path)
    expected = policy.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        name = (missing or unexpected)[0]
        kind = "missing" if missing else "unexpected"
        raise ScorePolicyError(f"{path}: {kind} tensor '{name}'; the weights do not match config.json")
    for k, v in tensors.items():
        if v.shape != expected[k].shape:
            raise ScorePolicyError(
                f"{path}: tensor '{k}' has shape {tuple(v.shape)}, config.json implies {tuple(expected[k].shape)}"
            )
    policy.load_state_dict(tensors)
    check_normalization(policy, str(path))


def read_policy_config(path: Path) -> PolicyConfig:
    """Parse and check a run's config.json."""
    from scorepolicy.policies.registry import policy_class

    meta: Any = read_json(path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "policy" not in meta:
        raise ScorePolicyError(f"{path}: not a scorepolicy config (field 'format' must be '{FORMAT}')")
    policy = meta["policy"]
    family = policy_class(str(policy.get("kind", "score")) if isinstance(policy, dict) else "score")
    cfg = from_dict(family.config_class, policy, f"{path}: policy")
    family.check_config(cfg, str(path))
    return cfg


def check_normalization(policy: ChunkPolicy, where: str) -> None:
    """Normalisation statistics must be finite with max ≥ min."""
    for name in policy.normalized_fields():
        lo, hi = getattr(policy, f"{name}_min"), getattr(policy, f"{name}_max")
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()) or bool((hi < lo).any()):
            raise ScorePolicyError(
                f"{where}: invalid {name} normalisation statistics (non-finite or max < min)"
            )
