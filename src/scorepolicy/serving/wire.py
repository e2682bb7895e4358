"""The wire format: msgpack maps of plain values, with numpy arrays encoded explicitly.

An array travels as the map `{"__ndarray__": true, "dtype": NAME, "shape": [...], "data": BYTES}`, its
bytes little-endian and C-ordered, its dtype one of `DTYPES` (numbers and booleans only). Nothing else
is accepted: no msgpack extension types, no object or string dtypes, no pickle anywhere, so decoding a
frame can never run code, and any client language can write one.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

ARRAY_MARK = "__ndarray__"
"""Key that marks a map as an encoded array."""
ARRAY_KEYS = frozenset({ARRAY_MARK, "dtype", "shape", "data"})
DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(name).newbyteorder("<")
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    )
}
"""The dtypes an array may have on the wire (always little-endian)."""
MAX_DEPTH = 16
"""Deepest nesting of maps and lists a message may have."""
MAX_NDIM = 8
"""Most dimensions an array may have."""


class WireError(Exception):
    """A frame or a field that breaks the protocol: `field` names it, `message` says what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _encode_default(obj: Any) -> Any:
    """msgpack's hook for values it does not know: arrays and numpy scalars (anything else is a bug)."""
    if isinstance(obj, np.ndarray):
        name = obj.dtype.name
        if name not in DTYPES:
            raise TypeError(f"arrays of dtype {obj.dtype} cannot be sent; use one of {', '.join(DTYPES)}")
        data = np.ascontiguousarray(obj, dtype=DTYPES[name]).tobytes()
        return {ARRAY_MARK: True, "dtype": name, "shape": list(obj.shape), "data": data}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send a value of type {type(obj).__name__}")


def pack(message: dict[str, Any]) -> bytes:
    """One message as msgpack bytes (numpy arrays and scalars encoded as above)."""
    return msgpack.packb(message, default=_encode_default, use_bin_type=True)


def unpack(frame: bytes, max_bytes: int) -> dict[str, Any]:
    """Decode and check one frame: a msgpack map with string keys and plain values, arrays decoded.

    Raises WireError naming 'frame' for anything that is not such a message, or the array's field for a
    malformed array.
    """
    if len(frame) > max_bytes:
        raise WireError("frame", f"message of {len(frame)} bytes is over the server's limit of {max_bytes}")
    try:
        obj = msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=max_bytes,
            max_str_len=max_bytes,
            max_array_len=max_bytes,
            max_map_len=max_bytes,
            max_ext_len=0,
        )
    except Exception as e:  # msgpack raises several types (ValueError, ExtraData, StackError, ...)
        raise WireError("frame", f"not a valid msgpack message ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise WireError("frame", f"a message must be a msgpack map, got {_kind(obj)}")
    return _decode(obj, "", 0)


def _kind(obj: Any) -> str:
    """A short name of a decoded value's type for error messages."""
    names: dict[type, str] = {dict: "map", list: "list", str: "string", bytes: "binary"}
    return names.get(type(obj), type(obj).__name__)


def _decode(obj: Any, where: str, depth: int) -> Any:
    """Check a decoded value's types recursively and turn array maps into numpy arrays."""
    if depth > MAX_DEPTH:
        raise WireError(where or "frame", f"nested deeper than {MAX_DEPTH} levels")
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    if isinstance(obj, list):
        return [_decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if ARRAY_MARK in obj:
            return decode_array(obj, where or "frame")
        return {k: _decode(v, f"{where}.{k}" if where else k, depth + 1) for k, v in obj.items()}
    raise WireError(where or "frame", f"values of type {type(obj).__name__} are not accepted")


def decode_array(obj: dict[str, Any], field: str) -> np.ndarray:
    """A numpy array from its wire map (a writable copy), or WireError naming `field`."""
    if set(obj) != ARRAY_KEYS or obj[ARRAY_MARK] is not True:
        raise WireError(
            field, f"an array map has exactly the keys {sorted(ARRAY_KEYS)} with {ARRAY_MARK}: true"
        )
    name, shape, data = obj["dtype"], obj["shape"], obj["data"]
    if not isinstance(name, str) or name not in DTYPES:
        raise WireError(field, f"dtype {name!r} is not accepted; use one of {', '.join(DTYPES)}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise WireError(field, f"shape must be a list of at most {MAX_NDIM} non-negative integers")
    if not isinstance(data, bytes):
        raise WireError(field, "data must be binary (msgpack bin)")
    dtype = DTYPES[name]
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise WireError(field, f"data holds {len(data)} bytes; shape {shape} of {name} needs {expected}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)
