"""A policy family defined outside scorepolicy.policies, registered when this module is imported."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from scorepolicy.policies import ChunkPolicy, Goal, MSEBCPolicyConfig, register_policy

IMPORTED = True


@dataclass
class ConstantConfig(MSEBCPolicyConfig):
    """Shared settings only; its own kind."""

    kind: str = "test-constant"  # type: ignore[assignment]
    """Policy family."""


@register_policy("test-constant")
class ConstantPolicy(ChunkPolicy):
    """Predicts the mid-range action everywhere (no learning): enough to test registration and loading."""

    config_class = ConstantConfig

    def compute_loss(
        self, batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Zero loss."""
        return torch.zeros(()), {"loss": 0.0}

    def predict_action_chunk(self, obs: Tensor, *, goal: Goal | None = None) -> Tensor:
        """The mid-range action for every step of the chunk."""
        zeros = torch.zeros(obs.shape[0], self.cfg.horizon, self.cfg.action_dim)
        return self.unnormalize("action", zeros)
