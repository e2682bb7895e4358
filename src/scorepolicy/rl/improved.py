"""What the improved policies built on a frozen score policy share (DSRL's noise actor, best-of-K's
critic): the learned module's view of the observation, and an improved run's save/load — the base in
`base/` (verified by its sha256 on load), only the learned module in `model.safetensors`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from scorepolicy.devices import resolve_device
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import (
    atomic_save_tensors,
    atomic_write_json,
    load_tensors,
    read_json,
    sha256_file,
    to_dict,
)
from scorepolicy.policies import ScorePolicy
from scorepolicy.policies.base import FORMAT, FORMAT_VERSION
from scorepolicy.rl.common import BASE_DIR, load_verified_base, read_improved_config, write_improved_config


class ImprovedScorePolicy(ScorePolicy):
    """A frozen score policy plus one small learned module, the attribute named `learned`."""

    learned: ClassVar[str] = ""
    """Attribute name of the learned module ('actor', 'critic')."""
    reward: str = "success"

    def learned_module(self) -> nn.Module:
        """The learned module."""
        module = getattr(self, self.learned)
        assert isinstance(module, nn.Module)
        return module

    def method_config(self) -> dict[str, Any]:
        """The method settings written to config.json's 'method'."""
        raise NotImplementedError

    def features(self, obs: Tensor) -> Tensor:
        """Flat input of the learned module for raw observation histories (B, T_o, obs_dim): the normalised
        state history and, for goal-carrying observations, the last step's raw goal entries."""
        width, state_dim = self.cfg.goal.obs_width, self.cfg.obs_dim - self.cfg.goal.obs_width
        state = self.normalize("obs", obs[..., :state_dim].float()).flatten(1)
        return torch.cat([state, obs[:, -1, state_dim:].float()], dim=1) if width else state

    def base_state_dict(self) -> dict[str, Tensor]:
        """The base's weights (everything but the learned module)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(f"{self.learned}.")}

    def save_pretrained(self, directory: str | Path, state_dict: dict[str, Tensor] | None = None) -> None:
        """Write an improved run: base/ (the base's weights and config), model.safetensors (the learned
        module) and config.json."""
        directory = Path(directory)
        atomic_save_tensors(directory / BASE_DIR / "model.safetensors", self.base_state_dict())
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "policy": to_dict(self.cfg)}
        atomic_write_json(directory / BASE_DIR / "config.json", meta)
        self.save_learned(directory)

    def save_learned(self, directory: Path) -> None:
        """model.safetensors (the learned module) and config.json, for a base copy already in directory/base
        (the subtask an existing config.json records is kept)."""
        atomic_save_tensors(Path(directory) / "model.safetensors", self.learned_module().state_dict())
        sha = sha256_file(Path(directory) / BASE_DIR / "model.safetensors")
        previous = Path(directory) / "config.json"
        subtask = read_json(previous).get("subtask") if previous.is_file() else None
        write_improved_config(directory, self.kind, self.method_config(), self.reward, self, sha, subtask)

    @staticmethod
    def read_run(directory: Path, device: str | torch.device) -> tuple[dict[str, Any], ScorePolicy]:
        """(config.json, the verified base) of an improved run; CPU only."""
        if resolve_device(device).type != "cpu":
            raise ScorePolicyError(f"{directory}: RL-improved policies run on the CPU only; use --device cpu")
        meta = read_improved_config(directory)
        base = load_verified_base(directory)
        if not isinstance(base, ScorePolicy):
            raise ScorePolicyError(f"{directory}/base: not a score policy")
        return meta, base

    def load_learned(self, directory: Path) -> dict[str, Tensor]:
        """model.safetensors' tensors, checked against the learned module's names and shapes."""
        tensors = load_tensors(directory / "model.safetensors")
        expected = self.learned_module().state_dict()
        if set(tensors) != set(expected) or any(tensors[k].shape != v.shape for k, v in expected.items()):
            raise ScorePolicyError(
                f"{directory}/model.safetensors: the {self.learned}'s tensors do not match config.json's "
                "method settings"
            )
        return tensors
