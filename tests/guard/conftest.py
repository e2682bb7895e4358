"""Fixtures of the guard tests: a small score policy on the point task of the evaluation tests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.append(ROOT)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """One torch thread, as evaluations run (and as a busy 2-core machine needs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
