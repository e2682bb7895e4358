"""Policy families by `PolicyConfig.kind`: the one place that maps a kind to its class (and its config class)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from scorepolicy.errors import ScorePolicyError

if TYPE_CHECKING:
    from scorepolicy.policies.base import ChunkPolicy
    from scorepolicy.policies.config import PolicyConfig


PolicyT = TypeVar("PolicyT", bound="type[ChunkPolicy]")

_FAMILIES: dict[str, type[ChunkPolicy]] = {}
_MODULES: dict[str, str] = {
    "score": "scorepolicy.policies.score_policy",
    "mse-bc": "scorepolicy.policies.baselines",
    "ddpm": "scorepolicy.policies.baselines",
}
"""Kinds whose class is registered when a module is imported (imported on first use, by path, so that a
family defined outside policies/ is found without policies/ importing its package at import time)."""


def register_policy(kind: str) -> Callable[[PolicyT], PolicyT]:
    """Class decorator: register a ChunkPolicy family (with its `config_class`) under `kind`, the value
    config.json stores at policy.kind (as LeRobot's `register_subclass`, for policies)."""

    def register(cls: PolicyT) -> PolicyT:
        if kind in _FAMILIES and _FAMILIES[kind] is not cls:
            raise ValueError(f"policy kind '{kind}' is already registered to {_FAMILIES[kind].__name__}")
        cls.kind = kind
        _FAMILIES[kind] = cls
        return cls

    return register


def register_policy_module(kind: str, module: str) -> None:
    """Declare that the family `kind` is registered by importing `module` (imported when first needed)."""
    _MODULES[kind] = module


def policy_kinds() -> list[str]:
    """Every kind registered or declared so far."""
    return list(dict.fromkeys([*_MODULES, *_FAMILIES]))


def policy_class(kind: str) -> type[ChunkPolicy]:
    """The class of a policy family ('score', 'mse-bc', 'ddpm', or a kind registered elsewhere)."""
    if kind not in _FAMILIES and kind in _MODULES:
        importlib.import_module(_MODULES[kind])
    if kind not in _FAMILIES:
        raise ScorePolicyError(f"unknown policy kind '{kind}'; valid kinds: {', '.join(policy_kinds())}")
    return _FAMILIES[kind]


def build_policy(cfg: PolicyConfig) -> ChunkPolicy:
    """A fresh policy of the family named by cfg.kind."""
    return policy_class(cfg.kind)(cfg)


IMPROVED_FORMAT = "scorepolicy/improved-policy"
IMPROVED_LOADER = "scorepolicy.rl.common"
"""Module (imported lazily, by path: policies/ never imports rl/ at import time) whose
`improved_policy_class(kind)` gives the class of an improved policy ('dsrl', 'residual')."""


def improved_policy_class(directory: Path) -> Any:
    """The class of the improved policy (RL on a frozen base) saved in `directory`, or None when the
    directory holds an ordinary policy."""
    try:
        meta = json.loads((Path(directory) / "config.json").read_text())
    except (OSError, ValueError):
        return None  # the ordinary loader reports missing or invalid files
    if not isinstance(meta, dict) or meta.get("format") != IMPROVED_FORMAT:
        return None
    return importlib.import_module(IMPROVED_LOADER).improved_policy_class(str(meta.get("kind")))
