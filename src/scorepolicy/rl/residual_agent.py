"""The residual agent: stable-baselines3 TD3 with LayerNorm critics, n-step returns, critic warm-up,
separate actor/critic learning rates, gradient clipping and an actor loss on the critic-ensemble mean
(ResFiT); and its checkpoint as safetensors + JSON (SB3's own `save` pickles, so it is not used)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import TD3
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, create_mlp
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.td3.policies import TD3Policy
from torch import Tensor, nn

from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import atomic_directory, atomic_save_tensors, load_tensors
from scorepolicy.rl.common import rng_state, set_rng_state
from scorepolicy.rl.residual import ResidualConfig, zero_last_layer
from scorepolicy.rl.residual_env import ResidualVecEnv

BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


class LayerNormCritic(ContinuousCritic):
    """SB3's continuous critic ensemble with LayerNorm after every hidden linear layer."""

    def __init__(
        self,
        observation_space: Any,
        action_space: Any,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        n_critics: int = 2,
        share_features_extractor: bool = True,
    ) -> None:
        super().__init__(
            observation_space, action_space, net_arch, features_extractor, features_dim,
            activation_fn, normalize_images, n_critics, share_features_extractor,
        )  # fmt: skip
        in_dim = features_dim + int(np.prod(action_space.shape))
        for idx in range(n_critics):
            layers = create_mlp(in_dim, 1, net_arch, activation_fn, post_linear_modules=[nn.LayerNorm])
            q_net = nn.Sequential(*layers)
            self.add_module(f"qf{idx}", q_net)
            self.q_networks[idx] = q_net


class ResidualTD3Policy(TD3Policy):
    """TD3's actor-critic with LayerNorm critics."""

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> ContinuousCritic:
        """A LayerNorm critic ensemble."""
        kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return LayerNormCritic(**kwargs).to(self.device)


def _clipped_step(optimizer: torch.optim.Optimizer, loss: Tensor, params: Any, clip: float) -> None:
    optimizer.zero_grad()
    loss.backward()
    if clip > 0:
        nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()


class ResidualTD3(TD3):
    """TD3 with critic warm-up (actor frozen for the first updates), gradient clipping and an actor loss
    on the mean over the critic ensemble."""

    critic_warmup: int = 0
    grad_clip: float = 1.0

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """`gradient_steps` critic updates, with delayed actor and target updates after the warm-up."""
        self.policy.set_training_mode(True)
        assert self.replay_buffer is not None
        for _ in range(gradient_steps):
            self._n_updates += 1
            data = self.replay_buffer.sample(batch_size)
            discounts = data.discounts if data.discounts is not None else self.gamma
            with torch.no_grad():
                noise = data.actions.clone().normal_(0, self.target_policy_noise)
                noise = noise.clamp(-self.target_noise_clip, self.target_noise_clip)
                next_a = (self.actor_target(data.next_observations) + noise).clamp(-1, 1)
                next_q = torch.cat(self.critic_target(data.next_observations, next_a), dim=1)
                target = data.rewards + (1 - data.dones) * discounts * next_q.min(dim=1, keepdim=True).values
            qs = self.critic(data.observations, data.actions)
            critic_loss = torch.stack([F.mse_loss(q, target) for q in qs]).sum()
            _clipped_step(self.critic.optimizer, critic_loss, self.critic.parameters(), self.grad_clip)
            if self._n_updates % self.policy_delay:
                continue
            if self._n_updates > self.critic_warmup:
                q_pi = torch.cat(self.critic(data.observations, self.actor(data.observations)), dim=1)
                actor_loss = -q_pi.mean()
                _clipped_step(self.actor.optimizer, actor_loss, self.actor.parameters(), self.grad_clip)
            polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
            polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)


def build_agent(env: ResidualVecEnv, cfg: ResidualConfig, seed: int) -> ResidualTD3:
    """The TD3 agent for a residual env: zero-initialised actor head (and target), n-step buffer."""
    d = env.action_space.shape[0]  # type: ignore[index]
    gradient_steps = max(1, round(cfg.utd * env.num_envs))
    model = ResidualTD3(
        ResidualTD3Policy,
        env,
        learning_rate=cfg.critic_lr,
        buffer_size=max(cfg.buffer_size, env.num_envs),
        learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size,
        tau=cfg.tau,
        gamma=cfg.gamma,
        train_freq=1,
        gradient_steps=gradient_steps,
        action_noise=NormalActionNoise(np.zeros(d), np.full(d, cfg.exploration_std)),
        n_steps=cfg.n_step,
        policy_delay=cfg.policy_delay,
        target_policy_noise=cfg.target_noise,
        target_noise_clip=cfg.target_noise_clip,
        policy_kwargs={
            "net_arch": {"pi": list(cfg.actor_hidden), "qf": list(cfg.critic_hidden)},
            "n_critics": cfg.n_critics,
        },
        seed=seed,
        device="cpu",
    )
    model.critic_warmup, model.grad_clip = cfg.critic_warmup, cfg.grad_clip
    for group in model.actor.optimizer.param_groups:
        group["lr"] = cfg.actor_lr
    zero_last_layer(model.actor.mu)
    model.actor_target.load_state_dict(model.actor.state_dict())
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


# ---------------------------------------------------------------------- checkpoints
def _optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], Any]:
    """An optimiser's state as named tensors plus its JSON-able rest (param groups, scalar entries)."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for k, v in entry.items():
            if isinstance(v, Tensor):
                tensors[f"{prefix}.{pid}.{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: Any) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, v in tensors.items():
        if name.startswith(prefix + "."):
            pid, k = name[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(pid), {})[k] = v
    for pid, entry in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entry)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(model: ResidualTD3, env: ResidualVecEnv, directory: Path) -> None:
    """Everything `load_checkpoint` needs to continue exactly: networks, optimisers, the replay buffer
    (the filled part), RNG states and counters, as safetensors + JSON (atomic directory replace)."""
    buf = model.replay_buffer
    assert buf is not None
    nets: dict[str, nn.Module] = {"actor": model.actor, "actor_target": model.actor_target}
    nets |= {"critic": model.critic, "critic_target": model.critic_target}
    tensors = {f"{n}.{k}": v for n, m in nets.items() for k, v in m.state_dict().items()}
    opt_meta = {}
    for name, opt in (("opt_actor", model.actor.optimizer), ("opt_critic", model.critic.optimizer)):
        t, opt_meta[name] = _optimizer_tensors(name, opt)
        tensors |= t
    tensors["rng.base_noise"] = env.noise_state()
    filled = buf.buffer_size if buf.full else buf.pos
    arrays = {f: torch.from_numpy(np.ascontiguousarray(getattr(buf, f)[:filled])) for f in BUFFER_FIELDS}
    meta = {
        "progress": {"env_steps": model.num_timesteps},
        "num_timesteps": model.num_timesteps,
        "n_updates": model._n_updates,
        "episode_num": model._episode_num,
        "buffer": {"pos": buf.pos, "full": buf.full, "size": buf.buffer_size},
        "env": env.state(),
        "optimizers": opt_meta,
        "rng": rng_state(),
        "rng_action_space": model.action_space.np_random.bit_generator.state,
    }
    with atomic_directory(directory) as tmp:
        atomic_save_tensors(tmp / "agent.safetensors", tensors)
        atomic_save_tensors(tmp / "replay.safetensors", arrays)
        (tmp / "state.json").write_text(json.dumps(meta, indent=1) + "\n")


def load_checkpoint(model: ResidualTD3, env: ResidualVecEnv, directory: Path) -> None:
    """Restore a `save_checkpoint` directory into a freshly built agent and env."""
    if not (directory / "state.json").is_file():
        raise ScorePolicyError(f"{directory}: no checkpoint to resume from; run without --resume")
    meta = json.loads((directory / "state.json").read_text())
    tensors = load_tensors(directory / "agent.safetensors")
    for name in ("actor", "actor_target", "critic", "critic_target"):
        sub = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
        getattr(model, name).load_state_dict(sub)
    _load_optimizer("opt_actor", model.actor.optimizer, tensors, meta["optimizers"]["opt_actor"])
    _load_optimizer("opt_critic", model.critic.optimizer, tensors, meta["optimizers"]["opt_critic"])
    buf = model.replay_buffer
    assert buf is not None
    if meta["buffer"]["size"] != buf.buffer_size:
        raise ScorePolicyError(
            f"{directory}: replay buffer size differs from the run's; resume with the same options"
        )
    arrays = load_tensors(directory / "replay.safetensors")
    for f in BUFFER_FIELDS:
        data = arrays[f].numpy()
        getattr(buf, f)[: len(data)] = data
    buf.pos, buf.full = int(meta["buffer"]["pos"]), bool(meta["buffer"]["full"])
    model.num_timesteps, model._n_updates = int(meta["num_timesteps"]), int(meta["n_updates"])
    model._episode_num = int(meta["episode_num"])
    env.load_state(meta["env"], tensors["rng.base_noise"])
    set_rng_state(meta["rng"])
    model.action_space.np_random.bit_generator.state = meta["rng_action_space"]
