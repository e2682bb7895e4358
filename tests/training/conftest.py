"""The data-parallel tests spawn rank processes that import `tests.training.ddp_workers` by name, so the
repository root goes on `sys.path` here (spawn passes `sys.path` on to them)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.append(ROOT)
