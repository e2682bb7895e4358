"""Read and write Diffusion-Policy replay-buffer zarr stores (`data/<key>` arrays, `meta/episode_ends`).

Every array's metadata is checked first (`zarr_meta`: numeric dtypes and an allow-list of codecs only,
so no code stored in the data runs) and every chunk file must be present (a replay buffer is written
dense; a missing chunk is lost data, not fill values). Plain zarr-v2 arrays in a local directory (the
layout Diffusion Policy publishes) are then decoded chunk by chunk with numcodecs, which is an order of
magnitude faster than going through zarr 3's async machinery; any other array (zarr v3 format, filters,
Fortran order) is read through the `zarr` package. Works with zarr 2 (>= 2.18) and zarr 3.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scorepolicy.core.episodes import Episodes
from scorepolicy.data.zarr_meta import (
    ArrayMeta,
    check_store_safe,
    is_array_dir,
    read_array_meta,
    require_dense,
)
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import atomic_directory

IMAGE_KEYS = frozenset({"img", "image", "images", "rgb"})
"""Keys left out by default (large per-step images); ask for them explicitly with `keys=`."""

_GROUP_MARKERS = (".zgroup", "zarr.json")
_FINITE_CHECK_ROWS = 4096
_WRITE_CHUNK_BYTES = 1 << 20


_is_array_dir = is_array_dir


def _array_shape(path: Path) -> tuple[int, ...]:
    """The shape recorded in an array directory's metadata (v2 or v3), after the safety check."""
    return read_array_meta(path).shape


def _read_v2_fast(meta: ArrayMeta, frames: bool = False) -> np.ndarray:
    """Decode a plain local zarr-v2 array chunk by chunk with numcodecs (every chunk must be present);
    with `frames`, each chunk is converted to uint8 as it is decoded (`frames_as_uint8`), so a float image
    array never exists in memory at full size."""
    import numcodecs

    compressor = meta.meta.get("compressor")
    codec = numcodecs.get_codec(compressor) if compressor else None
    out = np.empty(meta.shape, dtype=np.uint8 if frames else meta.dtype)
    nbytes = math.prod(meta.chunks) * meta.dtype.itemsize
    blosc = isinstance(compressor, dict) and compressor.get("id") == "blosc"
    buffer = np.empty(math.prod(meta.chunks), dtype=meta.dtype)
    for idx in meta.chunk_indices():
        region = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, meta.chunks, meta.shape))
        chunk_file = meta.path / meta.chunk_key(idx)
        raw = chunk_file.read_bytes()
        if blosc and not _blosc_frame_complete(raw, nbytes):
            raise ScorePolicyError(
                f"{chunk_file}: truncated or corrupt blosc chunk ({len(raw)} bytes); restore the file"
            )
        decoded = codec.decode(raw, out=buffer) if codec else raw
        if len(memoryview(decoded).cast("B")) != nbytes:
            raise ScorePolicyError(
                f"{chunk_file}: chunk decodes to {len(memoryview(decoded).cast('B'))} bytes, expected {nbytes}; "
                "restore the file"
            )
        block = np.frombuffer(decoded, dtype=meta.dtype).reshape(meta.chunks)
        block = block[tuple(slice(0, r.stop - r.start) for r in region)]
        out[region] = frames_as_uint8(block, chunk_file) if frames else block
    return out


def frames_as_uint8(frames: np.ndarray, where: str | Path) -> np.ndarray:
    """Image values as uint8: uint8 kept as is, other integers and floats in 0..255 (floats rounded); a
    one-line error naming `where` otherwise (NaN included). The one converter of recorded camera frames."""
    if frames.dtype == np.uint8:
        return frames
    if frames.dtype.kind not in "fiu":
        raise ScorePolicyError(
            f"{where}: frames must be uint8, integers or floats in 0..255, got {frames.dtype}"
        )
    if frames.size:
        lo, hi = frames.min(), frames.max()
        if not (lo >= 0 and hi <= 255):  # also catches NaN
            raise ScorePolicyError(
                f"{where}: image values must lie in 0..255 to be read as uint8 frames, found {lo}..{hi}; "
                "rescale the array (frames in 0..1 need x 255)"
            )
    return (np.rint(frames) if frames.dtype.kind == "f" else frames).astype(np.uint8)


def _blosc_frame_complete(raw: bytes, nbytes: int) -> bool:
    """True when a blosc frame's header records this file's length and the chunk's size (blosc itself
    would decode a truncated frame into whatever memory follows it)."""
    if len(raw) < 16:
        return False
    return int.from_bytes(raw[4:8], "little") == nbytes and int.from_bytes(raw[12:16], "little") == len(raw)


def _read_array(path: Path, frames: bool = False) -> np.ndarray:
    """The whole array stored at directory `path`: metadata checked, every chunk present, then decoded
    with numcodecs (plain v2) or the zarr package; with `frames`, as uint8 image values."""
    meta = read_array_meta(path)
    require_dense(meta)
    try:
        if meta.fast_v2 and meta.shape:
            return _read_v2_fast(meta, frames=True) if frames else _read_v2_fast(meta)
        import zarr

        if meta.zarr_format == 3 and int(zarr.__version__.split(".")[0]) < 3:
            raise ScorePolicyError(
                f"{path}: a zarr format 3 array needs zarr >= 3 (installed: {zarr.__version__}); "
                "pip install 'zarr>=3'"
            )
        arr = np.asarray(zarr.open_array(str(path), mode="r")[...])
        return frames_as_uint8(arr, path) if frames else arr
    except ScorePolicyError:
        raise
    except Exception as exc:
        raise ScorePolicyError(
            f"{path}: could not read zarr array ({type(exc).__name__}: {exc}); the store may be corrupt"
        ) from exc


def is_image_array(root: Path, key: str) -> bool:
    """True for the store's per-step image arrays: a name in IMAGE_KEYS or 4 or more dimensions."""
    return key in IMAGE_KEYS or len(_array_shape(root / "data" / key)) >= 4


def _as_float32(arr: np.ndarray) -> np.ndarray:
    """Floating arrays as float32 (no copy when already float32); other dtypes unchanged."""
    return arr.astype(np.float32, copy=False) if arr.dtype.kind == "f" else arr


def _first_nonfinite_row(arr: np.ndarray) -> int | None:
    """Index of the first row holding a NaN or inf, scanning in blocks to bound memory."""
    for start in range(0, arr.shape[0], _FINITE_CHECK_ROWS):
        block = arr[start : start + _FINITE_CHECK_ROWS]
        block = block.reshape(block.shape[0], -1)
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            return start + int(np.argmax(bad))
    return None


def check_replay_store(root: Path) -> None:
    """Raise ScorePolicyError unless `root` is a zarr directory with `data/` and `meta/episode_ends` whose
    every array has a numeric dtype and allowed codecs (checked before zarr or numcodecs decode anything)."""
    if not root.exists():
        raise ScorePolicyError(f"{root}: replay zarr not found; check the path (or download the dataset)")
    if not root.is_dir() or not any((root / m).is_file() for m in _GROUP_MARKERS):
        raise ScorePolicyError(
            f"{root}: not a zarr directory (no .zgroup or zarr.json); pass the replay-buffer '.zarr' folder"
        )
    if not _is_array_dir(root / "meta" / "episode_ends"):
        raise ScorePolicyError(
            f"{root}: missing 'meta/episode_ends'; a replay zarr needs each episode's exclusive end index"
        )
    if not (root / "data").is_dir():
        raise ScorePolicyError(f"{root}: missing the 'data/' group; a replay zarr keeps arrays in data/<key>")
    check_store_safe(root)


def _read_episode_ends(root: Path) -> np.ndarray:
    """Validated `meta/episode_ends` as int64."""
    ends = _read_array(root / "meta" / "episode_ends")
    where = f"{root}: meta/episode_ends"
    if ends.ndim != 1 or ends.size == 0 or ends.dtype.kind not in "iu":
        raise ScorePolicyError(f"{where} must be a non-empty 1-D int array, not {ends.dtype} {ends.shape}")
    ends = ends.astype(np.int64, copy=False)
    if ends[0] <= 0 or np.any(np.diff(ends) <= 0):
        raise ScorePolicyError(f"{where} must be positive and strictly increasing; rebuild the episode index")
    return ends


def _select_keys(root: Path, keys: Sequence[str] | None, images: bool = False) -> list[str]:
    """The requested data keys, checked against `data/`, or every non-image key by default (with `images`,
    every image array is added)."""
    available = sorted(p.name for p in (root / "data").iterdir() if _is_array_dir(p))
    if not available:
        raise ScorePolicyError(f"{root}: 'data/' holds no arrays; a replay zarr keeps arrays in data/<key>")
    image_keys = [k for k in available if is_image_array(root, k)]
    if keys is None:
        chosen = [k for k in available if k not in image_keys]
        return chosen + image_keys if images else chosen
    missing = [k for k in keys if k not in available]
    if missing:
        raise ScorePolicyError(
            f"{root}: data key '{missing[0]}' not found; available keys: {', '.join(available)}"
        )
    return list(dict.fromkeys([*keys, *image_keys] if images else keys))


def read_replay_zarr(path: str | Path, keys: Sequence[str] | None = None, images: bool = False) -> Episodes:
    """Read a Diffusion-Policy replay zarr into `Episodes` (floats as float32; images only on request).

    `images`: also read every image array (a name in IMAGE_KEYS or 4+ dimensions) and hold all of them as
    uint8 frames (floats in 0..255, as DP stores `data/img`, are rounded chunk by chunk; other values are a
    one-line error). Without it, image arrays named in `keys` are read as stored (floats as float32).
    """
    root = Path(path).expanduser()
    check_replay_store(root)
    ends = _read_episode_ends(root)
    n_steps = int(ends[-1])
    selected = _select_keys(root, keys, images)
    for key in selected:
        shape = _array_shape(root / "data" / key)
        if not shape or shape[0] != n_steps:
            raise ScorePolicyError(
                f"{root}: data/{key} has {shape[0] if shape else 0} steps but meta/episode_ends ends at "
                f"{n_steps}; every data array needs one row per step"
            )
    data: dict[str, np.ndarray] = {}
    for key in selected:
        frames = images and is_image_array(root, key)
        arr = _as_float32(_read_array(root / "data" / key, frames))
        if arr.dtype.kind == "f":
            row = _first_nonfinite_row(arr)
            if row is not None:
                episode = int(np.searchsorted(ends, row, side="right"))
                raise ScorePolicyError(
                    f"{root}: data/{key} holds NaN/inf at step {row} (episode {episode}); "
                    "clean or drop that episode"
                )
        data[key] = arr
    return Episodes(data=data, episode_ends=ends, source=str(root), attrs=_read_root_attrs(root))


def _read_root_attrs(root: Path) -> dict[str, object]:
    """The store's root attributes (v2 `.zattrs` or v3 `zarr.json` attributes), or {}."""
    try:
        if (root / ".zattrs").is_file():
            return dict(json.loads((root / ".zattrs").read_text()))
        if (root / "zarr.json").is_file():
            return dict(json.loads((root / "zarr.json").read_text()).get("attributes", {}))
    except (OSError, ValueError, TypeError):
        return {}
    return {}


def _zarr_v2_group(path: Path) -> Any:
    """A new, empty zarr-v2 group at `path` with whichever zarr major version is installed."""
    import zarr

    if int(zarr.__version__.split(".")[0]) >= 3:
        return zarr.open_group(str(path), mode="w", zarr_format=2)
    return zarr.open_group(str(path), mode="w")


def _write_array(group: Any, name: str, arr: np.ndarray) -> None:
    """Store `arr` under `group[name]`, chunked along the first (step) axis."""
    row_bytes = max(1, arr[:1].nbytes)
    chunks = (max(1, min(arr.shape[0], _WRITE_CHUNK_BYTES // row_bytes)), *arr.shape[1:])
    if hasattr(group, "create_array"):  # zarr 3 (dense: all-fill chunks are written too)
        target = group.create_array(
            name, shape=arr.shape, dtype=arr.dtype, chunks=chunks, config={"write_empty_chunks": True}
        )
        target[...] = arr
    else:  # zarr 2
        group.create_dataset(name, data=arr, chunks=chunks, write_empty_chunks=True)


def write_replay_zarr(episodes: Episodes, path: str | Path, overwrite: bool = False) -> Path:
    """Write `episodes` as a zarr-v2 replay buffer, atomically (temp dir beside `path`, then rename)."""
    target = Path(path).expanduser()
    if target.exists() and not overwrite:
        raise ScorePolicyError(f"{target}: already exists; choose another path or pass overwrite=True")
    with atomic_directory(target) as tmp:
        root = _zarr_v2_group(tmp)
        root.attrs.update(episodes.attrs)
        data = root.require_group("data")
        for key, arr in episodes.data.items():
            _write_array(data, key, np.ascontiguousarray(arr))
        meta = root.require_group("meta")
        _write_array(meta, "episode_ends", np.asarray(episodes.episode_ends, dtype=np.int64))
    return target
