"""scorepolicy: score-based (EDM/Karras) diffusion policies for robot learning."""

from scorepolicy.policies import DiffusionConfig, PolicyConfig, ScorePolicy

__version__ = "0.1.0"
__all__ = ["DiffusionConfig", "PolicyConfig", "ScorePolicy", "__version__"]
