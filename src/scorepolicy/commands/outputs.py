"""Output flags never destroy data: an existing file is replaced only with --overwrite, and never a run's own
files (weights, configs, training state, metrics, snapshots), nor a file this command reads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scorepolicy.errors import ScorePolicyError

RUN_OWN_FILES = frozenset(
    {
        "model.safetensors",
        "config.json",
        "train_config.json",
        "train_state.safetensors",
        "metrics.csv",
        "selection.json",
        "checkpoints",
        "best",
        "tb",
    }
)
"""Entries of a run directory that belong to the run itself: no output flag may write into them."""

RUN_MARKERS = ("model.safetensors", "train_config.json", "train_state.safetensors")
"""A directory holding one of these is a run (or a snapshot of one)."""


def run_owning(path: Path) -> Path | None:
    """The run directory whose own files include `path` (resolved), or None."""
    path = path.resolve()
    for parent in path.parents:
        if any((parent / marker).is_file() for marker in RUN_MARKERS):
            first = path.relative_to(parent).parts[0]
            if first in RUN_OWN_FILES or first.startswith(".best"):
                return parent
    return None


def _refuse_inputs(path: Path, flag: str, inputs: Sequence[Path]) -> None:
    resolved = path.resolve()
    owner = run_owning(path)
    if owner is not None:
        raise ScorePolicyError(
            f"{flag} {path}: is one of the files of the run {owner}; write outputs outside the run's own files"
        )
    for source in inputs:
        src = Path(source).resolve()
        if resolved == src or src in resolved.parents:
            raise ScorePolicyError(f"{flag} {path}: would overwrite the input {source}; choose another path")


def check_output_file(path: Path | None, flag: str, *, overwrite: bool, inputs: Sequence[Path] = ()) -> None:
    """Refuse an output file that is a run's own file or an input, or that exists (unless `overwrite`)."""
    if path is None:
        return
    _refuse_inputs(path, flag, inputs)
    if path.is_dir():
        raise ScorePolicyError(f"{flag} {path}: is a directory; give a file path")
    if path.exists() and not overwrite:
        raise ScorePolicyError(
            f"{flag} {path}: already exists; pass --overwrite to replace it or choose another path"
        )


def check_output_dir(
    path: Path | None, flag: str, *, overwrite: bool, inputs: Sequence[Path] = (), pattern: str = "*"
) -> None:
    """Refuse an output directory inside a run's own files or an input, or holding files that match
    `pattern` (those this command writes) unless `overwrite`."""
    if path is None:
        return
    _refuse_inputs(path, flag, inputs)
    if path.exists() and not path.is_dir():
        raise ScorePolicyError(f"{flag} {path}: is a file; give a directory")
    if path.is_dir() and any(path.glob(pattern)) and not overwrite:
        raise ScorePolicyError(
            f"{flag} {path}: already holds {pattern} files; pass --overwrite to replace them or choose another directory"
        )
