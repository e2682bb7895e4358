"""Evaluation: seeded, batched rollouts and metrics with intervals."""

from scorepolicy.evaluation.evaluate import EvalConfig, Evaluator, evaluate, format_result, summarize
from scorepolicy.evaluation.rollout import BatchPolicy, RolloutOptions
from scorepolicy.evaluation.stats import wilson_interval
from scorepolicy.evaluation.waves import run_rollouts

__all__ = [
    "BatchPolicy",
    "EvalConfig",
    "Evaluator",
    "RolloutOptions",
    "evaluate",
    "format_result",
    "run_rollouts",
    "summarize",
    "wilson_interval",
]
