"""The wire format: every allowed dtype round-trips exactly (as little-endian bytes); nothing else is
encoded or decoded."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from scorepolicy.serving.wire import DTYPES, WireError, pack, unpack


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_every_allowed_dtype_round_trips(name: str) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, 3, 4)) * 100
    array = (values > 0) if name == "bool" else values.astype(name)
    out = unpack(pack({"type": "x", "a": array, "empty": array[:0]}), 2**20)
    assert out["a"].dtype == np.dtype(name) and out["a"].shape == (2, 3, 4)
    np.testing.assert_array_equal(out["a"], array)
    assert out["empty"].shape == (0, 3, 4)
    out["a"][0] = out["a"][1]  # decoded arrays are writable copies


def test_big_endian_arrays_travel_as_little_endian() -> None:
    array = np.arange(5, dtype=">f4")
    frame = msgpack.unpackb(pack({"a": array}), raw=False)
    assert frame["a"]["data"] == np.arange(5, dtype="<f4").tobytes()
    np.testing.assert_array_equal(unpack(pack({"a": array}), 2**20)["a"], array)


@pytest.mark.parametrize(
    "array", [np.array(["a", "b"]), np.array([object(), 1], dtype=object), np.zeros(2, np.complex64)]
)
def test_arrays_outside_the_whitelist_are_not_sent(array: np.ndarray) -> None:
    with pytest.raises(TypeError):
        pack({"a": array})


def test_numpy_scalars_become_plain_values() -> None:
    out = unpack(pack({"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True)}), 2**20)
    assert out == {"i": 3, "f": 0.5, "b": True}


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"a": {"__ndarray__": True, "dtype": "float32", "shape": [2]}}, "a"),
        ({"a": {"__ndarray__": True, "dtype": "float32", "shape": [2], "data": b"x" * 8, "more": 1}}, "a"),
        ({"a": [{"__ndarray__": True, "dtype": "<U1", "shape": [1], "data": b"x" * 4}]}, "a[0]"),
        ({"a": {"b": {"__ndarray__": True, "dtype": "int8", "shape": [1] * 9, "data": b"x"}}}, "a.b"),
        ({"a": {"__ndarray__": True, "dtype": "int8", "shape": [True], "data": b"x"}}, "a"),
        ({"a": {"__ndarray__": True, "dtype": "int8", "shape": [2], "data": "xx"}}, "a"),
    ],
)
def test_malformed_arrays_name_their_field(obj: dict, field: str) -> None:
    with pytest.raises(WireError) as info:
        unpack(msgpack.packb(obj), 2**20)
    assert info.value.field == field


def test_frames_over_the_limit_are_refused_before_decoding() -> None:
    frame = pack({"a": np.zeros(100, np.float32)})
    with pytest.raises(WireError, match="over the server's limit") as info:
        unpack(frame, len(frame) - 1)
    assert info.value.field == "frame"
    assert unpack(frame, len(frame))["a"].shape == (100,)
