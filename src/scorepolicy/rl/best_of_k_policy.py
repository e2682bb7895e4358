"""The best-of-K improved policy: the frozen base proposes K chunks, a learned critic picks one.

At every decision the base decodes K initial noises (K draws from the policy's seeded per-row
generators, one batched call of B·K rows) and the critic Q(s, executed part of the chunk, t) scores
them; the chunk with the highest ensemble-mean Q is executed. The noise is the only thing chosen, so
this is a policy in the base's noise space (as in DSRL) whose actor is a sampled argmax (as in
QT-Opt), and with no critic (before the first fit) it is exactly the base. Saved as an improved run:
the base in `base/` (verified by its sha256 on load) and only the critic in `model.safetensors`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import from_dict, to_dict
from scorepolicy.policies import PolicyConfig, ScorePolicy
from scorepolicy.policies.base import ArrayT, Goal
from scorepolicy.policies.images import Frames, state_only
from scorepolicy.rl.best_of_k_config import BestOfKConfig
from scorepolicy.rl.improved import ImprovedScorePolicy


class QEnsemble(nn.Module):
    """`n` independent MLP critics with LayerNorm (Q(x) for every member: (B, n))."""

    def __init__(self, in_dim: int, n: int, hidden: int, layers: int) -> None:
        super().__init__()

        def member() -> nn.Sequential:
            mods: list[nn.Module] = []
            for i in range(layers):
                mods += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.LayerNorm(hidden), nn.ReLU()]
            return nn.Sequential(*mods, nn.Linear(hidden, 1))

        self.members = nn.ModuleList(member() for _ in range(n))
        self._stack: tuple[tuple[int, ...], list[Tensor]] | None = None

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_dim) → (B, n); in inference mode all members run at once on stacked weights."""
        if torch.is_inference_mode_enabled():
            return self._fused(x)
        return torch.cat([m(x) for m in self.members], dim=1)

    def _stacked(self) -> list[Tensor]:
        """Per layer, the members' weights stacked: [W (n, in, h), b (n, 1, h), γ (n, 1, h), β (n, 1, h)]
        per hidden layer, then the output W and b; rebuilt whenever a parameter changed."""
        params = list(self.parameters())
        versions = tuple(p._version for p in params)
        if self._stack is None or self._stack[0] != versions:
            mods: list[list[Any]] = [list(m.children()) for m in self.members]
            out: list[Tensor] = []
            for i in range(0, len(mods[0]) - 1, 3):
                lin, norm = [m[i] for m in mods], [m[i + 1] for m in mods]
                out += [torch.stack([layer.weight.t() for layer in lin]).detach()]
                out += [torch.stack([p.bias for p in lin])[:, None].detach()]
                out += [torch.stack([p.weight for p in norm])[:, None].detach()]
                out += [torch.stack([p.bias for p in norm])[:, None].detach()]
            out += [torch.stack([m[-1].weight.t() for m in mods]).detach()]
            out += [torch.stack([m[-1].bias for m in mods])[:, None].detach()]
            self._stack = (versions, out)
        return self._stack[1]

    def _fused(self, x: Tensor) -> Tensor:
        """The same Q values as the member loop, as a few batched matrix products."""
        w = self._stacked()
        h = x.unsqueeze(0).expand(len(self.members), -1, -1)
        for i in range(0, len(w) - 2, 4):
            h = torch.baddbmm(w[i + 1], h, w[i])
            h = torch.relu(nn.functional.layer_norm(h, h.shape[-1:]) * w[i + 2] + w[i + 3])
        return torch.baddbmm(w[-1], h, w[-2])[..., 0].t()


def critic_input_dim(cfg: PolicyConfig, bok: BestOfKConfig) -> int:
    """Size of the critic's input: state history, goal entries, executed actions, and the time feature."""
    width = cfg.goal.obs_width
    n_exec = bok.n_action_steps or cfg.n_action_steps
    return cfg.n_obs_steps * (cfg.obs_dim - width) + width + n_exec * cfg.action_dim + int(bok.time_feature)


class BestOfKPolicy(ImprovedScorePolicy):
    """A frozen score policy whose chunk is the best of K of its own samples under a critic (module doc)."""

    kind = "best-of-k"
    learned = "critic"

    def __init__(
        self, cfg: PolicyConfig, bok: BestOfKConfig, reward: str = "success", max_steps: int = 1
    ) -> None:
        if bok.n_action_steps is not None:
            cfg = dataclasses.replace(cfg, n_action_steps=bok.n_action_steps)
        super().__init__(cfg)
        self.bok, self.reward, self.max_steps = bok, reward, max_steps
        self.critic = QEnsemble(critic_input_dim(cfg, bok), bok.ensemble, bok.hidden, bok.layers)
        self.fitted = False  # before the first fit the policy is the base (one sample, no critic)
        self._t = 0

    @classmethod
    def from_base(cls, base: ScorePolicy, bok: BestOfKConfig, reward: str, max_steps: int) -> BestOfKPolicy:
        """A best-of-K policy on a copy of `base` (critic freshly initialised, not yet used)."""
        if not isinstance(base, ScorePolicy) or type(base) is not ScorePolicy:
            raise ScorePolicyError(
                f"best-of-K needs a score policy as its base, got a '{base.cfg.kind}' policy"
            )
        policy = cls(base.cfg, bok, reward, max_steps)
        policy.load_state_dict(base.state_dict(), strict=False)
        return policy.eval()

    def set_critic(self, state: dict[str, Tensor]) -> None:
        """Load critic weights; from now on the policy picks the best of K."""
        self.critic.load_state_dict(state)
        self.fitted = True

    # ---------------------------------------------------------------- the critic's view
    def critic_input(self, feats: Tensor, chunks_norm: Tensor, t: Tensor) -> Tensor:
        """Critic input from state features (B, F), normalised chunks (B, H, d_a) and step indices (B,)."""
        executed = chunks_norm[:, : self.cfg.n_action_steps].flatten(1)
        parts = [feats, executed]
        if self.bok.time_feature:
            parts.append((t.float() / self.max_steps)[:, None])
        return torch.cat(parts, dim=1)

    def score(self, feats: Tensor, chunks_norm: Tensor, t: Tensor) -> Tensor:
        """Ensemble-mean Q of each (state, chunk) row."""
        return self.critic(self.critic_input(feats, chunks_norm, t)).mean(dim=1)

    # ---------------------------------------------------------------- acting
    @torch.inference_mode()
    def choose(
        self, obs: Tensor, noise: Tensor, t: Tensor, goal: Goal | None = None
    ) -> tuple[Tensor, Tensor]:
        """For histories (B, T_o, d_o), candidate noise (B, K, H, d_a) and steps (B,): the index of the best
        candidate per row and all raw candidate chunks (B, K, H, d_a), decoded in one batched call."""
        b, k = noise.shape[:2]
        hist = obs.repeat_interleave(k, dim=0)
        if goal is not None:
            goal = {key: torch.as_tensor(v).repeat_interleave(k, dim=0) for key, v in goal.items()}
        chunks = super().predict_action_chunk(hist, goal=goal, noise=noise.reshape(b * k, *noise.shape[2:]))
        if not self.fitted or k == 1:
            return torch.zeros(b, dtype=torch.long), chunks.reshape(b, k, *chunks.shape[1:])
        q = self.score(self.features(hist), self.normalize("action", chunks), t.repeat_interleave(k))
        return q.reshape(b, k).argmax(dim=1), chunks.reshape(b, k, *chunks.shape[1:])

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
        """Raw action chunks: the best of K base samples (the base's own chunk for a given `noise`)."""
        obs = state_only(obs, "best-of-K policies")
        self._check_obs(obs, (self.cfg.n_obs_steps, self.cfg.obs_dim))
        if noise is not None or not self.fitted:
            return super().predict_action_chunk(obs, goal=goal, nfe=nfe, noise=noise, guidance=guidance)
        b = obs.shape[0]
        candidates = torch.stack([self.initial_noise(b) for _ in range(self.bok.candidates)], dim=1)
        best, chunks = self.choose(obs, candidates, torch.full((b,), self._t), goal)
        return chunks[torch.arange(b), best]

    def reset(self, seed: int | None = None, goal: Goal | None = None, *, seeds: Any = None) -> None:
        """Start new episodes (the step counter of the time feature restarts at 0)."""
        super().reset(seed, goal, seeds=seeds)
        self._t = 0

    def select_action(self, obs: ArrayT | Mapping[str, ArrayT], goal: Goal | None = None) -> ArrayT:
        """One action per env (see ChunkPolicy.select_action); counts the episode's steps."""
        action = super().select_action(obs, goal)
        self._t += 1
        return action

    # ---------------------------------------------------------------- save / load
    def method_config(self) -> dict[str, Any]:
        """The method settings saved in config.json (with the step limit the time feature divides by)."""
        return {**to_dict(self.bok), "max_steps": self.max_steps}

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> Any:
        """Load an improved run written by `save_pretrained` (the base verified by its hash); CPU only."""
        directory = Path(directory)
        meta, base = cls.read_run(directory, device)
        settings = dict(meta["method"])
        max_steps = int(settings.pop("max_steps", 1))
        bok = from_dict(BestOfKConfig, settings, f"{directory}/config.json: method")
        policy = cls.from_base(base, bok, str(meta.get("reward", "success")), max_steps)
        policy.set_critic(policy.load_learned(directory))
        return policy.eval()
