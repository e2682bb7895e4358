"""Policies: the score policy (and baseline families) behind one ChunkPolicy interface."""

from scorepolicy.policies.base import ChunkPolicy, Goal
from scorepolicy.policies.config import DiffusionConfig, GoalConfig, PolicyConfig, PolicyKind
from scorepolicy.policies.registry import build_policy, policy_class
from scorepolicy.policies.score_policy import ScorePolicy

__all__ = [
    "ChunkPolicy",
    "DiffusionConfig",
    "Goal",
    "GoalConfig",
    "PolicyConfig",
    "PolicyKind",
    "ScorePolicy",
    "build_policy",
    "policy_class",
]
