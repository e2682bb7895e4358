"""Zarr array metadata read as plain JSON and checked before the `zarr` package sees the store.

Two guarantees for every replay zarr this package reads:

- **No code runs from data.** numcodecs decodes object dtypes and codecs such as `pickle` by running
  code stored in the file. Every array's metadata (v2 `.zarray`, v3 `zarr.json`) is read here first,
  and an array whose dtype is not numeric or whose filters/compressor (v3: codecs) are outside
  `ALLOWED_CODECS` is refused with a one-line error naming it; only then is zarr or numcodecs called.
- **Missing chunks are corruption.** A replay buffer is written dense, so a chunk file that is absent
  is a lost piece of data (zarr would return its fill value, e.g. rows of zeros): `missing_chunks`
  names the rows it covered.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scorepolicy.errors import ScorePolicyError

ALLOWED_CODECS = ("blosc", "zstd", "lz4", "gzip", "zlib", "bz2", "lzma")
"""Compressors (and filters) an array may use: lossless compression only, none of which runs code."""
_V3_SERIALIZERS = ("bytes",)  # v3's array -> bytes step: raw little/big-endian bytes
_NUMERIC_KINDS = "biufc"


@dataclass(frozen=True)
class ArrayMeta:
    """What the readers need of one array's metadata, checked to be safe to decode."""

    path: Path
    """The array directory."""
    zarr_format: int
    """2 (`.zarray`) or 3 (`zarr.json`)."""
    shape: tuple[int, ...]
    """Array shape."""
    chunks: tuple[int, ...]
    """Chunk shape (same length as `shape`)."""
    dtype: np.dtype
    """Numeric dtype of the values."""
    meta: dict[str, Any]
    """The raw metadata document."""

    @property
    def fast_v2(self) -> bool:
        """True when numcodecs alone can decode it: v2, C order, no filters."""
        return self.zarr_format == 2 and not self.meta.get("filters") and self.meta.get("order", "C") == "C"

    def chunk_key(self, index: tuple[int, ...]) -> str:
        """The chunk's file name relative to the array directory."""
        if self.zarr_format == 2:
            sep = self.meta.get("dimension_separator") or "."
            return sep.join(str(i) for i in index) if index else "0"
        encoding = self.meta.get("chunk_key_encoding") or {"name": "default"}
        config = encoding.get("configuration") or {}
        if encoding.get("name") == "v2":
            sep = config.get("separator", ".")
            return sep.join(str(i) for i in index) if index else "0"
        sep = config.get("separator", "/")
        return sep.join(["c", *(str(i) for i in index)])

    def chunk_indices(self) -> Iterator[tuple[int, ...]]:
        """Every chunk's grid index, in C order."""
        yield from itertools.product(*(range(math.ceil(s / c)) for s, c in zip(self.shape, self.chunks)))


def _where(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name in ("data", "meta") else str(path)


def _refuse(path: Path, what: str) -> ScorePolicyError:
    return ScorePolicyError(
        f"{path}: zarr array '{_where(path)}' uses {what}, which is refused (decoding it could run code "
        f"or is not supported); a replay zarr holds numeric arrays compressed with one of "
        f"{', '.join(ALLOWED_CODECS)} or none: rewrite the array"
    )


def _codec_ids(path: Path, meta: dict[str, Any]) -> list[str]:
    """The ids of every filter and the compressor (v2) or every codec (v3), nested codecs included."""
    if meta.get("zarr_format") == 3 or "codecs" in meta:
        codecs = meta.get("codecs") or []
        ids = [c.get("name") if isinstance(c, dict) else c for c in codecs]
    else:
        filters = meta.get("filters") or []
        compressor = meta.get("compressor")
        ids = [f.get("id") if isinstance(f, dict) else f for f in filters]
        ids += (
            []
            if compressor is None
            else [compressor.get("id") if isinstance(compressor, dict) else compressor]
        )
    for codec in ids:
        if not isinstance(codec, str):
            raise _refuse(path, f"a codec without a name ({codec!r})")
    return [str(c) for c in ids]


def _numeric_dtype(path: Path, desc: object) -> np.dtype:
    """The dtype named by `desc` when it is a plain numeric one; refused otherwise (before numpy sees objects)."""
    if not isinstance(desc, str):
        raise _refuse(path, f"the structured or extension dtype {json.dumps(desc)[:60]}")
    try:
        dtype = np.dtype(desc)
    except TypeError as exc:
        raise _refuse(path, f"the unknown dtype '{desc}'") from exc
    if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject:
        raise _refuse(path, f"the non-numeric dtype '{desc}'")
    return dtype


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ScorePolicyError(f"{path}: unreadable zarr metadata ({exc}); restore or rewrite it") from exc
    if not isinstance(doc, dict):
        raise ScorePolicyError(f"{path}: zarr metadata is not a JSON object; restore or rewrite it")
    return doc


def _shape_and_chunks(path: Path, meta: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if "codecs" in meta or meta.get("zarr_format") == 3:
        grid = meta.get("chunk_grid") or {}
        if grid.get("name") != "regular":
            raise _refuse(path, f"the chunk grid {grid.get('name')!r}")
        chunks = (grid.get("configuration") or {}).get("chunk_shape")
    else:
        chunks = meta.get("chunks")
    try:
        shape = tuple(int(n) for n in meta["shape"])
        chunk_shape = tuple(int(n) for n in chunks)  # type: ignore[union-attr]
    except (KeyError, TypeError, ValueError) as exc:
        raise ScorePolicyError(f"{path}: zarr array metadata lacks a valid shape/chunks; rewrite it") from exc
    if len(chunk_shape) != len(shape) or any(c < 1 for c in chunk_shape) or any(s < 0 for s in shape):
        raise ScorePolicyError(
            f"{path}: zarr array shape {list(shape)} and chunks {list(chunk_shape)} disagree"
        )
    return shape, chunk_shape


def read_array_meta(path: Path) -> ArrayMeta:
    """The checked metadata of the array at directory `path` (refuses unsafe dtypes and codecs)."""
    v2 = (path / ".zarray").is_file()
    meta = _read_json(path / (".zarray" if v2 else "zarr.json"))
    allowed = ALLOWED_CODECS if v2 else (*ALLOWED_CODECS, *_V3_SERIALIZERS)
    for codec in _codec_ids(path, meta):
        if codec not in allowed:
            raise _refuse(path, f"the codec '{codec}'")
    dtype = _numeric_dtype(path, meta.get("dtype" if v2 else "data_type"))
    shape, chunks = _shape_and_chunks(path, meta)
    return ArrayMeta(path, 2 if v2 else 3, shape, chunks, dtype, meta)


def is_array_dir(path: Path) -> bool:
    """True when `path` is a zarr array directory (v2 `.zarray` or a v3 `zarr.json` of node_type array)."""
    if (path / ".zarray").is_file():
        return True
    meta = path / "zarr.json"
    if not meta.is_file():
        return False
    try:
        return bool(json.loads(meta.read_text()).get("node_type") == "array")
    except (OSError, ValueError, AttributeError):
        return False


def store_arrays(root: Path) -> Iterator[Path]:
    """Every array directory under `root`, walking every other directory (a group whose marker file is
    missing included) but never into an array (its chunk files are not listed)."""
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if is_array_dir(child):
            yield child
        else:
            yield from store_arrays(child)


def check_store_safe(root: Path) -> None:
    """Refuse the store when any array's metadata names a dtype or codec outside the allow-list."""
    for path in store_arrays(root):
        read_array_meta(path)


def missing_chunks(meta: ArrayMeta) -> list[tuple[int, ...]]:
    """Grid indices of the chunks whose files are absent (a dense store has none)."""
    listing: set[str] | None = None
    try:
        listing = set(os.listdir(meta.path))
    except OSError:
        listing = set()
    absent = []
    for index in meta.chunk_indices():
        key = meta.chunk_key(index)
        present = key in listing if "/" not in key else (meta.path / key).is_file()
        if not present:
            absent.append(index)
    return absent


def _row_ranges(meta: ArrayMeta, absent: list[tuple[int, ...]]) -> list[tuple[int, int]]:
    """Merged first-axis row ranges [start, stop) covered by the absent chunks."""
    if not meta.shape:
        return [(0, 1)]
    rows = sorted({i[0] for i in absent})
    ranges: list[tuple[int, int]] = []
    for r in rows:
        start, stop = r * meta.chunks[0], min((r + 1) * meta.chunks[0], meta.shape[0])
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], stop)
        else:
            ranges.append((start, stop))
    return ranges


def require_dense(meta: ArrayMeta) -> None:
    """Raise a one-line error naming the array and the rows of its absent chunks, if any."""
    absent = missing_chunks(meta)
    if not absent:
        return
    ranges = _row_ranges(meta, absent)
    shown = ", ".join(f"{a}-{b - 1}" for a, b in ranges[:5]) + (" ..." if len(ranges) > 5 else "")
    n_rows = sum(b - a for a, b in ranges)
    raise ScorePolicyError(
        f"{meta.path}: zarr array '{_where(meta.path)}' is missing {len(absent)} chunk file(s) holding rows "
        f"{shown} ({n_rows} of {meta.shape[0] if meta.shape else 1} rows); a replay buffer is written dense, "
        "so data was lost: restore the files or re-create the dataset"
    )
