"""Policy families by `PolicyConfig.kind`: the one place that maps a kind to its class."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scorepolicy.errors import ScorePolicyError

if TYPE_CHECKING:
    from scorepolicy.policies.base import ChunkPolicy
    from scorepolicy.policies.config import PolicyConfig


def policy_class(kind: str) -> type[ChunkPolicy]:
    """The class of a policy family ('score', 'mse-bc', 'ddpm')."""
    if kind == "score":
        from scorepolicy.policies.score_policy import ScorePolicy

        return ScorePolicy
    if kind == "mse-bc":
        from scorepolicy.policies.baselines import MSEBCPolicy

        return MSEBCPolicy
    if kind == "ddpm":
        from scorepolicy.policies.baselines import DDPMPolicy

        return DDPMPolicy
    raise ScorePolicyError(f"unknown policy kind '{kind}'; valid kinds: score, mse-bc, ddpm")


def build_policy(cfg: PolicyConfig) -> ChunkPolicy:
    """A fresh policy of the family named by cfg.kind."""
    return policy_class(cfg.kind)(cfg)
