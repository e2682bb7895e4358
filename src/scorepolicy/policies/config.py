"""Typed configuration of a score policy: diffusion, denoiser and chunking."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast

from scorepolicy.diffusion.samplers import SamplerName
from scorepolicy.diffusion.schedules import ScheduleName, Terminal
from scorepolicy.errors import ScorePolicyError, check_field
from scorepolicy.files import to_dict
from scorepolicy.models import MLPConfig, MoDEConfig, TransformerConfig, UNet1DConfig, VisionConfig

PolicyKind = Literal["score", "mse-bc", "ddpm"]
"""Policy families on the same backbone: the score policy and the baselines."""
DenoiserName = Literal["mlp", "transformer", "mode", "unet1d"]


@dataclass
class DiffusionConfig:
    """Score-based (EDM/Karras) diffusion: training σ density and few-step sampling."""

    sigma_data: float = 0.5
    """σ_data of EDM preconditioning (std of normalised actions)."""
    sigma_min: float = 0.002
    """Smallest noise level, for training and for the sampling schedule."""
    sigma_max: float = 80.0
    """Largest noise level, for training and (unless sample_sigma_max is set) the start of sampling."""
    sample_sigma_max: float | None = 20.0
    """Noise level sampling starts from (None = sigma_max). Below the training top, so that few-step
    schedules do not spend a step at noise levels where D(x; σ) is just the mean action; 20 was chosen
    on Push-T validation seeds 0..99 (NFE 3: 0.845 mean score vs 0.795 from 80)."""
    rho: float = 7.0
    """Karras schedule curvature."""
    train_density: Literal["lognormal", "loglogistic", "loguniform"] = "lognormal"
    """Training σ density, truncated to [sigma_min, sigma_max]."""
    p_mean: float = -1.2
    """Log-normal mean of ln σ (EDM: −1.2)."""
    p_std: float = 1.2
    """Log-normal std of ln σ (EDM: 1.2)."""
    loglogistic_scale: float = 0.5
    """Log-logistic scale of ln σ, centred at ln σ_data (BESO: 0.5)."""
    sampler: SamplerName = "ddim"
    """Sampler used by predict_action_chunk."""
    schedule: ScheduleName = "karras"
    """σ schedule used for sampling."""
    terminal: Terminal = "replace"
    """'replace': N+1 schedule points with the last set to 0 (every step counts); 'append': k-diffusion's."""
    nfe: int = 3
    """Denoiser evaluations per action chunk."""
    train_copies: int = 1
    """Level-2 minibatching (Mini-Diffuser): noised copies of each action chunk per encoded condition
    in a training batch (1 = ordinary training). The copies never see each other."""
    precond: Literal["edm", "consistency"] = "edm"
    """Output scalings: 'edm' (Karras et al. 2022), or 'consistency' (Song et al. 2023: D(x; σ_min) = x
    exactly), which `scorepolicy distill` sets for its few-step students (never trained by `train`)."""


@dataclass
class DDPMConfig:
    """The DDPM baseline (Diffusion Policy's defaults): ε-prediction on a discrete cosine schedule."""

    train_steps: int = 100
    """Diffusion steps T of training (and of full DDPM sampling)."""
    beta_schedule: Literal["squaredcos_cap_v2", "linear"] = "squaredcos_cap_v2"
    """β schedule: the cosine ᾱ schedule of Nichol & Dhariwal (β capped at 0.999), or linear β."""
    beta_start: float = 1e-4
    """First β of the linear schedule."""
    beta_end: float = 0.02
    """Last β of the linear schedule."""
    clip_sample: bool = True
    """Clip the predicted clean (normalised) actions to [-1, 1] at every sampling step."""
    sampler: Literal["ddpm", "ddim"] = "ddpm"
    """Ancestral DDPM sampling or deterministic DDIM (η = 0)."""
    inference_steps: int = 100
    """Sampling steps (denoiser calls per chunk), evenly strided over the T training steps."""


@dataclass
class GoalConfig:
    """What the policy is conditioned on besides the observation, and how the goal is dropped (CFG)."""

    n_tasks: int = 0
    """Number of task ids (learned embedding); 0 = no task-id goal."""
    goal_dim: int = 0
    """Size of a goal vector (e.g. a target position, or a goal observation); 0 = no goal vector."""
    dropout: float = 0.1
    """Probability of dropping the goal during training (classifier-free guidance; BESO: 0.1)."""
    dropout_mode: Literal["sample", "element"] = "sample"
    """'sample': drop the whole goal of a sample; 'element': BESO's per-element zeroing of the goal vector
    (the task id is still dropped per sample)."""
    guidance: float = 1.0
    """Guidance weight λ at sampling: 0 = goal-free policy, 1 = conditional, > 1 extrapolates."""
    from_observation: bool = False
    """The goal arrives inside the observation vector: its last entries are [task id] (if n_tasks > 0)
    then the goal vector (if goal_dim > 0), so envs and rollouts need nothing goal-specific."""

    @property
    def obs_width(self) -> int:
        """Entries of the observation vector that carry the goal (0 unless from_observation)."""
        return (int(self.n_tasks > 0) + self.goal_dim) if self.from_observation else 0

    @property
    def enabled(self) -> bool:
        """Whether the policy is goal-conditioned."""
        return self.n_tasks > 0 or self.goal_dim > 0


@dataclass
class PolicyConfig:
    """A policy over action chunks, conditioned on an observation history (and optionally a goal).

    The command line parses this class, with every family's section; each family has its own subclass
    (`ScorePolicyConfig`, `MSEBCPolicyConfig`, `DDPMPolicyConfig`, registered with the family's policy class
    by kind) that validates what the family needs and saves only the sections it uses (`used_dict`).
    """

    family_sections: ClassVar[tuple[str, ...]] = ("diffusion", "ddpm")
    """Family-specific sections this config uses and checks, beyond the shared fields and the chosen
    denoiser's (the command-line class: every family's)."""

    kind: PolicyKind = "score"
    """Policy family: 'score' (EDM diffusion), or the baselines 'mse-bc' and 'ddpm' on the same backbone."""
    obs_dim: int = 0
    """Observation size (0 = take it from the data)."""
    action_dim: int = 0
    """Action size (0 = take it from the data)."""
    n_obs_steps: int = 2
    """T_o: observations the policy conditions on (the current one and T_o − 1 before it)."""
    horizon: int = 16
    """T_p: actions predicted per chunk, starting at the current step."""
    n_action_steps: int = 8
    """T_a: actions of each chunk executed before re-planning."""
    denoiser: DenoiserName = "mlp"
    """Denoiser network: residual FiLM MLP, dense transformer, MoDE (mixture-of-experts transformer), or
    unet1d (Diffusion Policy's temporal conv U-Net with FiLM)."""
    mlp: MLPConfig = field(default_factory=MLPConfig)
    """MLP denoiser settings (used when denoiser='mlp')."""
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    """Transformer denoiser settings (used when denoiser='transformer')."""
    mode: MoDEConfig = field(default_factory=MoDEConfig)
    """MoDE denoiser settings (used when denoiser='mode')."""
    unet1d: UNet1DConfig = field(default_factory=UNet1DConfig)
    """Temporal conv U-Net settings (used when denoiser='unet1d')."""
    goal: GoalConfig = field(default_factory=GoalConfig)
    """Goal conditioning (task id and/or goal vector) and classifier-free guidance."""
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    """Diffusion settings."""
    ddpm: DDPMConfig = field(default_factory=DDPMConfig)
    """DDPM baseline settings (used when kind='ddpm')."""
    seed: int = 0
    """Seed of the sampling noise generator."""
    obs_noise: float = 0.0
    """Training augmentation: std of Gaussian noise added to the observed state (not the goal entries),
    as a fraction of each entry's normalisation half-range (Push-T: 0.01 ≈ 2.5 px); 0 = off."""
    image_shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """Camera key -> (height, width, 3) of the uint8 RGB frames the policy conditions on besides the state
    (empty: a state-only policy). Taken from the task when training; the checkpoint records it."""
    vision: VisionConfig = field(default_factory=VisionConfig)
    """Image encoder settings (used when image_shapes is not empty)."""

    def __post_init__(self) -> None:
        shapes = {str(k): tuple(int(s) for s in v) for k, v in self.image_shapes.items()}
        self.image_shapes = cast(
            dict[str, tuple[int, int, int]], shapes
        )  # from JSON: lists; checked by validate

    def validate(self, prefix: str = "--policy.") -> None:
        """One-line errors naming the flag of any value out of its range (every section's numbers)."""
        for name in ("obs_dim", "action_dim", "seed", "obs_noise"):
            check_field(_flag(prefix, name), getattr(self, name), at_least=0)
        check_field(_flag(prefix, "n_obs_steps"), self.n_obs_steps, at_least=1)
        check_field(_flag(prefix, "horizon"), self.horizon, at_least=1)
        check_field(_flag(prefix, "n_action_steps"), self.n_action_steps, at_least=1, at_most=self.horizon)
        check_network(self, prefix)
        if self.image_shapes:
            check_vision(self.vision, self.image_shapes, prefix + "vision.")
        check_goal(self.goal, prefix + "goal.")
        if "diffusion" in self.family_sections:
            check_diffusion(self.diffusion, prefix + "diffusion.")
        if "ddpm" in self.family_sections:
            check_ddpm(self.ddpm, prefix + "ddpm.")

    def used_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict without the sections this config does not use: the other
        denoisers' and the other families' (what config.json stores)."""
        unused = {"mlp", "transformer", "mode", "unet1d", "diffusion", "ddpm"} - {
            self.denoiser,
            *self.family_sections,
        }
        if not self.image_shapes:
            unused |= {"image_shapes", "vision"}
        return {k: v for k, v in to_dict(self).items() if k not in unused}

    def to_family(self) -> PolicyConfig:
        """This config as its family's config class (`kind` decides); the sections are shared, not copied."""
        from scorepolicy.policies.registry import policy_class

        family = policy_class(self.kind).config_class
        if isinstance(self, family):
            return self
        return family(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


@dataclass
class ScorePolicyConfig(PolicyConfig):
    """The score policy's config: the shared settings and EDM diffusion (`diffusion`)."""

    family_sections: ClassVar[tuple[str, ...]] = ("diffusion",)


@dataclass
class MSEBCPolicyConfig(PolicyConfig):
    """The MSE behaviour-cloning baseline's config: only the shared settings (one network call per chunk)."""

    kind: PolicyKind = "mse-bc"
    """Policy family (always 'mse-bc' for this class)."""
    family_sections: ClassVar[tuple[str, ...]] = ()


@dataclass
class DDPMPolicyConfig(PolicyConfig):
    """The DDPM baseline's config: the shared settings and the discrete diffusion (`ddpm`)."""

    kind: PolicyKind = "ddpm"
    """Policy family (always 'ddpm' for this class)."""
    family_sections: ClassVar[tuple[str, ...]] = ("ddpm",)


def _flag(prefix: str, name: str) -> str:
    return prefix + name.replace("_", "-")


def _at_least(prefix: str, section: object, names: tuple[str, ...], low: float) -> None:
    for name in names:
        check_field(_flag(prefix, name), getattr(section, name), at_least=low)


def check_network(cfg: PolicyConfig, prefix: str) -> None:
    """Sizes of the three denoiser sections are positive; heads divide the width; MoDE's routing fits."""
    _at_least(prefix + "mlp.", cfg.mlp, ("width", "n_blocks", "cond_dim", "sigma_dim"), 1)
    for name, net in (("transformer", cfg.transformer), ("mode", cfg.mode)):
        _at_least(f"{prefix}{name}.", net, ("d_model", "n_layers", "n_heads"), 1)
        if net.d_model % net.n_heads:
            raise ScorePolicyError(f"{prefix}{name}.n-heads: must divide {name}.d_model ({net.d_model})")
    _at_least(prefix + "transformer.", cfg.transformer, ("ff_mult",), 1)
    check_field(prefix + "transformer.dropout", cfg.transformer.dropout, at_least=0, below=1)
    m = cfg.mode
    _at_least(prefix + "mode.", m, ("n_experts", "expert_mult", "action_group"), 1)
    check_field(prefix + "mode.top-k", m.top_k, at_least=1, at_most=m.n_experts)
    check_field(prefix + "mode.balance-weight", m.balance_weight, at_least=0)
    if cfg.denoiser == "mode" and cfg.horizon % m.action_group:
        raise ScorePolicyError(f"{prefix}mode.action-group: must divide the horizon ({cfg.horizon})")
    check_unet1d(cfg.unet1d, prefix + "unet1d.")


def check_unet1d(u: UNet1DConfig, prefix: str) -> None:
    """At least one level, positive widths that n_groups divides, an odd kernel."""
    _at_least(prefix, u, ("kernel_size", "n_groups", "cond_dim", "sigma_dim"), 1)
    if not u.down_dims or any(w < 1 or w % u.n_groups for w in u.down_dims):
        raise ScorePolicyError(
            f"{prefix}down-dims: give one or more widths, each a positive multiple of n-groups ({u.n_groups})"
        )
    if u.kernel_size % 2 == 0:
        raise ScorePolicyError(f"{prefix}kernel-size: must be odd (got {u.kernel_size}), e.g. 5")


def check_vision(v: VisionConfig, shapes: dict[str, tuple[int, int, int]], prefix: str) -> None:
    """Positive sizes, and a crop that fits every camera's (height, width, 3) frames."""
    _at_least(prefix, v, ("feature_dim", "keypoints", "group_size"), 1)
    check_field(prefix + "crop", v.crop, at_least=0)
    if not v.cnn_channels or any(c < 1 for c in v.cnn_channels):
        raise ScorePolicyError(f"{prefix}cnn-channels: give one or more positive widths, e.g. 32 64 64")
    for key, shape in shapes.items():
        if len(shape) != 3 or shape[2] != 3 or min(shape) < 1:
            raise ScorePolicyError(
                f"image_shapes: camera '{key}' has shape {tuple(shape)}; expected (H, W, 3)"
            )
        if v.crop > min(shape[0], shape[1]):
            raise ScorePolicyError(
                f"{prefix}crop: {v.crop} exceeds camera '{key}' frames of {shape[0]}×{shape[1]}; "
                f"use a crop of at most {min(shape[0], shape[1])} (or 0 for none)"
            )


def check_goal(g: GoalConfig, prefix: str) -> None:
    """Goal sizes are non-negative, dropout a probability below 1, guidance non-negative."""
    _at_least(prefix, g, ("n_tasks", "goal_dim", "guidance"), 0)
    check_field(prefix + "dropout", g.dropout, at_least=0, below=1)


def check_diffusion(d: DiffusionConfig, prefix: str) -> None:
    """Noise levels ordered and positive, positive shape parameters, at least one step and one copy."""
    check_field(prefix + "sigma-data", d.sigma_data, above=0)
    check_field(prefix + "sigma-min", d.sigma_min, above=0, below=d.sigma_max)
    check_field(prefix + "sample-sigma-max", d.sample_sigma_max, above=d.sigma_min)
    for name in ("rho", "p_std", "loglogistic_scale"):
        check_field(_flag(prefix, name), getattr(d, name), above=0)
    _at_least(prefix, d, ("nfe", "train_copies"), 1)


def check_ddpm(d: DDPMConfig, prefix: str) -> None:
    """At least two training steps, β in (0, 1), 1 ≤ inference steps ≤ training steps."""
    check_field(prefix + "train-steps", d.train_steps, at_least=2)
    check_field(prefix + "beta-start", d.beta_start, above=0, below=1)
    check_field(prefix + "beta-end", d.beta_end, above=0, below=1)
    check_field(prefix + "inference-steps", d.inference_steps, at_least=1, at_most=d.train_steps)
