"""Policies: the score policy (and baseline families) behind one ChunkPolicy interface."""

from scorepolicy.policies.base import ChunkPolicy, Goal
from scorepolicy.policies.config import (
    DDPMPolicyConfig,
    DiffusionConfig,
    GoalConfig,
    MSEBCPolicyConfig,
    PolicyConfig,
    PolicyKind,
    ScorePolicyConfig,
)
from scorepolicy.policies.registry import build_policy, policy_class, register_policy, register_policy_module
from scorepolicy.policies.score_policy import ScorePolicy

__all__ = [
    "ChunkPolicy",
    "DDPMPolicyConfig",
    "DiffusionConfig",
    "Goal",
    "GoalConfig",
    "MSEBCPolicyConfig",
    "PolicyConfig",
    "PolicyKind",
    "ScorePolicy",
    "ScorePolicyConfig",
    "build_policy",
    "policy_class",
    "register_policy",
    "register_policy_module",
]
