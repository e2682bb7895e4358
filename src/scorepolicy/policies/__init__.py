"""Policies: ScorePolicy and its configuration."""

from scorepolicy.policies.config import DiffusionConfig, PolicyConfig
from scorepolicy.policies.score_policy import ScorePolicy

__all__ = ["DiffusionConfig", "PolicyConfig", "ScorePolicy"]
