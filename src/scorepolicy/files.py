"""Atomic file writes and typed JSON configs (dataclasses <-> dicts, with one-line errors)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import types
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save

from scorepolicy.errors import ScorePolicyError

T = TypeVar("T")


def current_umask() -> int:
    """The process's file-creation mask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder, fsync and an atomic rename; the file
    gets the mode an ordinary `open` would give (0666 minus the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename inside `directory` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (indented, keys in insertion order)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """A fresh path beside `target` to build a directory in; it replaces `target` (by rename) only when
    the block succeeds, and is removed otherwise, so readers never see a half-written directory."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
        fsync_directory(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_save_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Save tensors as safetensors, atomically (fsynced before the rename, mode from the umask)."""
    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file (never unpickles); a missing or corrupt file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ScorePolicyError(f"{path}: file not found; is this a scorepolicy run directory?")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises several types for corrupt headers
        raise ScorePolicyError(
            f"{path}: not a readable safetensors file ({e}); re-save the checkpoint"
        ) from e


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: str | Path) -> Any:
    """Read JSON with a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ScorePolicyError(f"{path}: file not found; is this a scorepolicy run directory?")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ScorePolicyError(f"{path}: invalid JSON ({e}); restore or re-create the file") from e


def to_dict(obj: Any) -> Any:
    """A dataclass (possibly nested) as a JSON-ready dict."""
    return dataclasses.asdict(obj)


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass `cls` from a dict, checking field names and simple types; errors name the field."""
    if not isinstance(data, dict):
        raise ScorePolicyError(f"{where}: expected an object for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ScorePolicyError(f"{where}: unknown field '{unknown[0]}' for {cls.__name__}; remove it")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_dict(tp, value, where)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ScorePolicyError(f"{where}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        return _convert(next(a for a in args if a is not type(None)), value, where)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, bool, str) and not (isinstance(value, tp) and (tp is bool or not isinstance(value, bool))):
        raise ScorePolicyError(f"{where}: expected {tp.__name__}, got {value!r}")
    if origin in (list, tuple) and isinstance(value, list):
        return tuple(value) if origin is tuple else value
    return value
