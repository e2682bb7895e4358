"""RL improvement of a frozen trained policy (DSRL noise-space steering, residual RL) with stable-baselines3.

Importing this package does not import stable-baselines3; the methods import it when they train.
"""

from scorepolicy.rl.common import METHODS, RLContext, get_method

__all__ = ["METHODS", "RLContext", "get_method"]
