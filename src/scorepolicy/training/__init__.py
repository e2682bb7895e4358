"""Training: the loop, its config and its resumable state."""

from scorepolicy.training.config import TrainConfig
from scorepolicy.training.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
