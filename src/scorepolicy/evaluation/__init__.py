"""Evaluation: seeded, vectorised rollouts and metrics with intervals."""

from scorepolicy.evaluation.evaluate import EvalConfig, Evaluator, evaluate, format_result, summarize
from scorepolicy.evaluation.rollout import BatchPolicy, run_rollouts
from scorepolicy.evaluation.stats import wilson_interval

__all__ = [
    "BatchPolicy",
    "EvalConfig",
    "Evaluator",
    "evaluate",
    "format_result",
    "run_rollouts",
    "summarize",
    "wilson_interval",
]
