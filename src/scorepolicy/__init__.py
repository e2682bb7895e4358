"""scorepolicy: score-based (EDM/Karras) diffusion policies for robot learning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scorepolicy.policies import DiffusionConfig, PolicyConfig, ScorePolicy

if TYPE_CHECKING:
    from scorepolicy.serving.client import PolicyClient

__version__ = "0.1.0"
__all__ = ["DiffusionConfig", "PolicyClient", "PolicyConfig", "ScorePolicy", "__version__"]


def __getattr__(name: str) -> Any:
    """`PolicyClient` is imported on first use, so the base package does not need the `serve` extra."""
    if name == "PolicyClient":
        try:
            from scorepolicy.serving.client import PolicyClient
        except ImportError as e:
            raise ImportError(
                f"PolicyClient needs the serve extra: pip install 'scorepolicy[serve]' ({e})"
            ) from e
        return PolicyClient
    raise AttributeError(f"module 'scorepolicy' has no attribute {name!r}")
