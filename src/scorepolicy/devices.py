"""Which torch device a command or API call runs on (`--device auto|cpu|cuda`)."""

from __future__ import annotations

from typing import Literal

import torch

from scorepolicy.errors import ScorePolicyError

DeviceName = Literal["auto", "cpu", "cuda"]
"""auto: CUDA when torch sees a device, else the CPU."""


def resolve_device(name: str | torch.device, index: int = 0) -> torch.device:
    """The device `name` stands for (auto: CUDA when available, else the CPU); `index` picks the CUDA device
    (a data-parallel rank's local rank). A torch.device (or 'cuda:1', 'meta', ...) is taken as given."""
    if isinstance(name, torch.device) or name not in ("auto", "cpu", "cuda"):
        try:
            return torch.device(name)
        except RuntimeError:
            raise ScorePolicyError(f"--device: must be auto, cpu or cuda, got {name!r}") from None
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ScorePolicyError("--device cuda: torch sees no CUDA device here; use --device cpu (or auto)")
    count = torch.cuda.device_count()
    if index >= count:
        raise ScorePolicyError(
            f"--device cuda: CUDA device {index} is needed (one per local rank) but {count} are visible; "
            "start at most that many ranks per machine"
        )
    return torch.device("cuda", index)


def device_of(policy: object) -> torch.device:
    """The device a policy runs on: its `device` attribute, else its first parameter's, else the CPU
    (exported graphs and RL-improved policies run on the CPU)."""
    device = getattr(policy, "device", None)
    if isinstance(device, torch.device):
        return device
    parameters = getattr(policy, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return first.device if isinstance(first, torch.Tensor) else torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; nothing to do on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


__all__ = ["DeviceName", "device_of", "resolve_device", "synchronize"]
