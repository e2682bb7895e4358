"""Fuzz: random bytes, random msgpack, message-shaped maps with random fields and arrays, oversize and text
frames. Every frame gets a reply (an answer or an error naming a field, never an internal error or a
traceback), the connection stays open, nothing is logged as an error, and afterwards a well-behaved
client still gets exactly the in-process policy's actions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from tests.serving.helpers import Raw, local_policy, observations, url

from scorepolicy.serving import OBS_KEY, PolicyClient, PolicyServer
from scorepolicy.serving.protocol import FIELDS
from scorepolicy.serving.wire import DTYPES, pack

REPLY_TYPES = {"error", "action", "chunk", "reset", "pong", "auth"}

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=32),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
array_map = st.fixed_dictionaries(
    {
        "__ndarray__": st.sampled_from([True, 1, False]),
        "dtype": st.sampled_from([*DTYPES, "complex64", "object", "<U3", "V8"]) | plain,
        "shape": st.lists(st.integers(-2, 6), max_size=4) | plain,
        "data": st.binary(max_size=96) | plain,
    }
)
numeric_array = st.sampled_from(["float32", "float64", "int16", "bool", "uint8"]).flatmap(
    lambda dtype: arrays(np.dtype(dtype), st.sampled_from([(3,), (2, 3), (1, 3), (4,), (2, 2), (3, 3), ()]))
)
value = plain | array_map | numeric_array
message = st.fixed_dictionaries(
    {"type": st.sampled_from([*FIELDS, "teleport"]) | plain},
    optional={
        "obs": value | st.dictionaries(st.sampled_from([OBS_KEY, "observation.image"]), value, max_size=2),
        "noise": value,
        "seed": st.integers(-5, 2**64 - 1) | plain,
        "goal": plain,
        "id": plain,
        "token": plain,
        "extra": plain,
    },
)


def encode_message(msg: dict[str, Any]) -> bytes:
    """Pack a fuzzed message (numpy arrays via the wire format, maps as they are)."""
    return pack(msg)


frames = st.one_of(
    st.binary(max_size=200),
    plain.map(lambda v: msgpack.packb(v, use_bin_type=True)),
    message.map(encode_message),
    st.binary(min_size=4097, max_size=6000),  # over --max-message-bytes, under the hard limit
    st.text(max_size=40),
)


class Errors(logging.Handler):
    """Collects ERROR records of the server's logger (internal errors would be logged there)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.timeout(300)
def test_fuzzed_frames_never_break_the_server(server: PolicyServer, tiny_run: Path) -> None:
    errors = Errors()
    logger = logging.getLogger("scorepolicy.serving")
    logger.addHandler(errors)
    raw = Raw(url(server))
    replies: dict[str, int] = {}

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(frame=frames)
    def send_one(frame: bytes | str) -> None:
        reply = raw.call(frame)  # raises if the connection was closed
        assert reply.get("type") in REPLY_TYPES, reply
        replies[reply["type"]] = replies.get(reply["type"], 0) + 1
        if reply["type"] == "error":
            assert isinstance(reply["field"], str) and reply["field"] != "server", reply
            assert "Traceback" not in reply["message"]

    try:
        send_one()
        assert raw.call({"type": "ping"})["type"] == "pong"
    finally:
        raw.close()
        logger.removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]
    assert replies.get("error", 0) > 0 and sum(replies.values()) >= 100
    with PolicyClient(url(server)) as client:
        client.reset(seed=8)
        local = local_policy(tiny_run, 8)
        for o in observations(6, seed=8):
            np.testing.assert_array_equal(client.select_action(o), local.select_action(o))
