"""Where a result came from: code commit, package versions, python, platform, command line and time.

Every JSON result (train_config.json, `eval`, `compare`, `latency`, `select`, the benchmarks) carries
`"provenance": provenance(task)`, so a number can always be traced to the code and setup that made it.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from scorepolicy.errors import ScorePolicyError

CORE_PACKAGES = ("scorepolicy", "torch", "numpy", "gymnasium")
"""Distributions whose versions every provenance records."""

ENV_PACKAGES: dict[str, tuple[str, ...]] = {"pusht": ("gym-pusht",), "metaworld": ("metaworld", "mujoco")}
"""Task-name prefix → the simulator distributions recorded for it (the obstacle task is part of scorepolicy)."""


def package_version(name: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(source: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(source), *args], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def git_state(source: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding `source`; (None, None) outside a checkout."""
    commit = _git(source, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git(source, "status", "--porcelain", "--untracked-files=no")
    return commit, (None if status is None else bool(status))


def env_packages(task: str | None) -> tuple[str, ...]:
    """The simulator distributions a task uses (by its name's prefix)."""
    if not task:
        return ()
    return next((pkgs for prefix, pkgs in ENV_PACKAGES.items() if task.startswith(prefix)), ())


def provenance(task: str | Iterable[str] | None = None, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The provenance object of a result made now by this process (with the simulators of `task`/tasks)."""
    commit, dirty = git_state(Path(__file__).resolve().parent)
    tasks = [task] if task is None or isinstance(task, str) else list(task)
    names = dict.fromkeys([*CORE_PACKAGES, *(p for t in tasks for p in env_packages(t))])
    return {
        "commit": commit,
        "dirty": dirty,
        "versions": {name: package_version(name) for name in names},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": list(sys.argv if argv is None else argv),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def same_code(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """True when two provenances name the same clean commit and the same package versions."""
    if not a or not b or a.get("dirty") or b.get("dirty") or a.get("commit") is None:
        return False
    return a.get("commit") == b.get("commit") and a.get("versions") == b.get("versions")


def require_same_code(parts: dict[str, dict[str, Any] | None], what: str) -> None:
    """Refuse to merge results (`what`) whose parts were made by different code (one-line error)."""
    items = list(parts.items())
    for name, prov in items[1:]:
        if not same_code(items[0][1], prov):
            raise ScorePolicyError(
                f"{what}: part '{name}' was made by other code than '{items[0][0]}' (commit, dirty tree or "
                "package versions differ); re-run every part with one clean checkout, or keep them apart"
            )
