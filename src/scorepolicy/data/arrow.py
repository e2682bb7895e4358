"""Parquet / Arrow helpers with one-line errors: read a file, turn a column into a numpy array."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scorepolicy.errors import ScorePolicyError

INSTALL_HINT = "install it with `pip install pyarrow` (a scorepolicy dependency)"


def _pq() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
        raise ScorePolicyError(f"reading parquet needs pyarrow; {INSTALL_HINT}") from exc
    return pq


def parquet_columns(path: Path) -> list[str]:
    """Column names of a parquet file (reads only its footer)."""
    if not path.is_file():
        raise ScorePolicyError(f"{path}: file not found; restore it (or re-convert the dataset)")
    try:
        return list(_pq().read_schema(str(path)).names)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for corrupt files
        raise ScorePolicyError(f"{path}: not a readable parquet file ({_short(exc)}); restore it") from exc


def read_parquet(path: Path, columns: Sequence[str] | None = None) -> Any:
    """A parquet file as a pyarrow Table; a missing file, column or corrupt footer is a one-line error."""
    if columns is not None:
        available = parquet_columns(path)
        missing = [c for c in columns if c not in available]
        if missing:
            raise ScorePolicyError(
                f"{path}: column '{missing[0]}' missing (it has: {', '.join(available)}); "
                "restore the file or re-convert the dataset"
            )
    elif not path.is_file():
        raise ScorePolicyError(f"{path}: file not found; restore it (or re-convert the dataset)")
    try:
        return _pq().read_table(str(path), columns=list(columns) if columns is not None else None)
    except Exception as exc:
        raise ScorePolicyError(f"{path}: not a readable parquet file ({_short(exc)}); restore it") from exc


def _short(exc: BaseException) -> str:
    """The first line of an exception message, prefixed by its type."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


def column_to_numpy(column: Any, where: str) -> np.ndarray:
    """A numeric or (fixed-size) list column as an (n, ...) numpy array; nulls and ragged rows are errors."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.null_count:
        raise ScorePolicyError(f"{where}: {arr.null_count} null value(s); fill or drop those frames")
    kind = arr.type
    if pa.types.is_fixed_size_list(kind):
        inner = column_to_numpy(arr.flatten(), where)
        return inner.reshape(len(arr), kind.list_size, *inner.shape[1:])
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        if len(lengths) and np.any(lengths != lengths[0]):
            row = int(np.argmax(lengths != lengths[0]))
            raise ScorePolicyError(
                f"{where}: ragged rows (row 0 has {lengths[0]} values, row {row} has {lengths[row]}); "
                "every frame needs the same shape"
            )
        inner = column_to_numpy(arr.flatten(), where)
        width = int(lengths[0]) if len(lengths) else 0
        return inner.reshape(len(arr), width, *inner.shape[1:])
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return np.asarray(arr.to_numpy(zero_copy_only=False))
    raise ScorePolicyError(f"{where}: unsupported column type {kind}; expected numbers or lists of numbers")
