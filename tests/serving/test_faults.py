"""Bad input gets an error reply naming the field and the connection keeps serving; slow inference, a
client leaving mid-request, idle clients, rate and session limits leave the server serving the others."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import msgpack
import numpy as np
import pytest
import torch
from tests.serving.helpers import Raw, local_policy, observations, url, wait_until
from websockets.exceptions import ConnectionClosed

from scorepolicy.policies import ChunkPolicy, ScorePolicy
from scorepolicy.serving import OBS_KEY, PolicyClient, PolicyServer, ServeConfig, ServerError, running_server
from scorepolicy.serving.wire import pack


def array_map(dtype: str, shape: list[int], data: bytes) -> dict[str, Any]:
    return {"__ndarray__": True, "dtype": dtype, "shape": shape, "data": data}


def select(obs: Any) -> dict[str, Any]:
    return {"type": "select_action", "obs": obs}


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


F32 = np.float32
BAD_FRAMES: dict[str, tuple[Any, str]] = {
    "unknown observation key": (select({"observation.image": np.zeros(3, F32)}), "obs.observation.image"),
    "missing observation key": (select({}), f"obs.{OBS_KEY}"),
    "obs not an array": (select({OBS_KEY: [1.0, 2.0, 3.0]}), f"obs.{OBS_KEY}"),
    "wrong shape": (select({OBS_KEY: np.zeros(4, F32)}), f"obs.{OBS_KEY}"),
    "batch over the limit": (select({OBS_KEY: np.zeros((65, 3), F32)}), f"obs.{OBS_KEY}"),
    "boolean dtype": (select({OBS_KEY: np.zeros(3, bool)}), f"obs.{OBS_KEY}"),
    "complex dtype": (select({OBS_KEY: array_map("complex64", [3], bytes(24))}), f"obs.{OBS_KEY}"),
    "object dtype": (select({OBS_KEY: array_map("object", [3], bytes(24))}), f"obs.{OBS_KEY}"),
    "array bytes short": (select({OBS_KEY: array_map("float32", [3], bytes(8))}), f"obs.{OBS_KEY}"),
    "array shape negative": (select({OBS_KEY: array_map("float32", [-3], b"")}), f"obs.{OBS_KEY}"),
    "NaN": (select({OBS_KEY: np.array([np.nan, 0, 0], F32)}), f"obs.{OBS_KEY}"),
    "inf": (select({OBS_KEY: np.array([0, np.inf, 0], F32)}), f"obs.{OBS_KEY}"),
    "beyond float32": (select({OBS_KEY: np.array([1e300, 0, 0])}), f"obs.{OBS_KEY}"),
    "unknown message type": ({"type": "teleport"}, "type"),
    "missing type": ({"obs": np.zeros(3, F32)}, "type"),
    "unknown field": ({"type": "ping", "payload": 1}, "payload"),
    "bad id": ({"type": "ping", "id": [1]}, "id"),
    "negative seed": ({"type": "reset", "seed": -1}, "seed"),
    "float seed": ({"type": "reset", "seed": 1.5}, "seed"),
    "goal for a goal-free policy": ({"type": "reset", "goal": {"task": 0}}, "goal"),
    "noise of the wrong shape": (
        {"type": "predict_chunk", "obs": np.zeros((2, 3), F32), "noise": np.zeros((3, 2), F32)},
        "noise",
    ),
    "history of the wrong length": ({"type": "predict_chunk", "obs": np.zeros((3, 3), F32)}, "obs"),
    "malformed msgpack": (b"\xc1\xff\x00", "frame"),
    "truncated msgpack": (pack(select(np.zeros(3, F32)))[:-5], "frame"),
    "trailing bytes": (pack({"type": "ping"}) + b"\x01", "frame"),
    "not a map": (msgpack.packb([1, 2, 3]), "frame"),
    "extension type": (msgpack.packb({"type": msgpack.ExtType(5, b"x")}), "frame"),
    "nested too deep": (msgpack.packb({"type": "ping", "id": nested(40)}), "id"),
    "text frame": ("select_action", "frame"),
    "oversize frame": (b"\x00" * 5000, "frame"),  # over --max-message-bytes (4096), under twice it
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_bad_frame_gets_an_error_reply_and_the_connection_stays(
    server: PolicyServer, tiny_run: Path, case: str
) -> None:
    frame, field = BAD_FRAMES[case]
    raw = Raw(url(server))
    try:
        reply = raw.call(frame)
        assert reply["type"] == "error" and reply["field"].startswith(field), reply
        assert "Traceback" not in reply["message"] and "File " not in reply["message"]
        assert reply["field"] != "server"  # a refused request, not an internal error
        # the same connection still answers a well-formed request correctly
        assert raw.call({"type": "reset", "seed": 3})["type"] == "reset"
        obs = observations(1, seed=0)[0]
        action = raw.call({**select({OBS_KEY: obs}), "id": "after"})
        assert action["id"] == "after"
        np.testing.assert_array_equal(action["action"], local_policy(tiny_run, 3).select_action(obs))
    finally:
        raw.close()


def test_far_oversize_frame_closes_only_that_connection(server: PolicyServer, tiny_run: Path) -> None:
    raw = Raw(url(server))
    raw.send(b"\x00" * 9000)  # over twice --max-message-bytes: websockets' own limit closes the connection
    with pytest.raises(ConnectionClosed) as info:
        raw.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    with PolicyClient(url(server)) as client:
        client.reset(seed=1)
        obs = observations(3, seed=1)
        local = local_policy(tiny_run, 1)
        for o in obs:
            np.testing.assert_array_equal(client.select_action(o), local.select_action(o))


def test_policy_error_names_the_field_and_keeps_the_session(server: PolicyServer) -> None:
    with PolicyClient(url(server)) as client:
        client.select_action(np.zeros((2, 3), F32))
        with pytest.raises(ServerError) as info:  # the policy refuses a batch change without reset
            client.select_action(np.zeros((3, 3), F32))
        assert info.value.field == "obs" and "reset" in info.value.message
        client.reset()
        assert client.select_action(np.zeros((3, 3), F32)).shape == (3, 2)


class GatedPolicy(ScorePolicy):
    """A score policy whose chunk prediction, while `armed`, signals `entered` and waits for `release`
    (class attributes: every session's copy shares them)."""

    armed: ClassVar[bool] = False
    entered: ClassVar[threading.Event] = threading.Event()
    release: ClassVar[threading.Event] = threading.Event()

    def predict_action_chunk(self, obs: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if GatedPolicy.armed:
            GatedPolicy.entered.set()
            assert GatedPolicy.release.wait(60), "the test never released the inference"
        return super().predict_action_chunk(obs, **kwargs)


@pytest.fixture
def gated_server(tiny_run: Path) -> Iterator[PolicyServer]:
    loaded = ChunkPolicy.from_pretrained(tiny_run)
    policy = GatedPolicy(loaded.cfg)
    policy.load_state_dict(loaded.state_dict())
    GatedPolicy.entered.clear()
    GatedPolicy.release.clear()
    GatedPolicy.armed = False  # the tests arm it
    try:
        with running_server(tiny_run, ServeConfig(port=0), policy=policy.optimize_for_inference()) as srv:
            yield srv
    finally:
        GatedPolicy.armed = False
        GatedPolicy.release.set()


def health(server: PolicyServer) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=30) as response:
        assert response.headers["Content-Type"] == "application/json"
        return dict(json.loads(response.read()))


def test_health_and_other_clients_answer_while_inference_is_slow(
    gated_server: PolicyServer, tiny_run: Path
) -> None:
    obs = observations(2, seed=5)
    results: list[np.ndarray] = []
    with PolicyClient(url(gated_server)) as slow, PolicyClient(url(gated_server)) as planned:
        planned.reset(seed=3)
        first = planned.select_action(obs[0])  # plans a chunk: the next call only pops its second action
        slow.reset(seed=2)
        GatedPolicy.armed = True
        thread = threading.Thread(target=lambda: results.append(slow.select_action(obs[0])))
        thread.start()
        assert GatedPolicy.entered.wait(30)
        report = health(gated_server)  # answered while the inference thread is blocked
        assert report["status"] == "ok" and report["inference_in_flight"] == 1 and report["sessions"] == 2
        second = planned.select_action(obs[1])  # a queued action: answered without the inference thread
        with PolicyClient(url(gated_server)) as other:  # connects, gets metadata, pings meanwhile
            assert other.metadata["type"] == "metadata"
            assert other.ping()["type"] == "pong"
        assert not results  # still waiting: the answers above did not need the inference thread
        GatedPolicy.armed = False
        GatedPolicy.release.set()
        thread.join(timeout=30)
    np.testing.assert_array_equal(results[0], local_policy(tiny_run, 2).select_action(obs[0]))
    local = local_policy(tiny_run, 3)
    np.testing.assert_array_equal(np.stack([first, second]), np.stack([local.select_action(o) for o in obs]))


@pytest.mark.parametrize("how", ["close", "abort"])
def test_client_disconnecting_mid_request(gated_server: PolicyServer, tiny_run: Path, how: str) -> None:
    raw = Raw(url(gated_server))
    GatedPolicy.armed = True
    raw.send(pack(select({OBS_KEY: observations(1, seed=0)[0]})))
    assert GatedPolicy.entered.wait(30)
    if how == "close":
        raw.close()
    else:  # the socket vanishes without a close frame
        raw.ws.socket.close()
    GatedPolicy.armed = False
    GatedPolicy.release.set()  # the reply now goes to a closed connection
    wait_until(lambda: gated_server.health()["sessions"] == 0)
    with PolicyClient(url(gated_server)) as client:
        client.reset(seed=4)
        obs = observations(4, seed=4)
        local = local_policy(tiny_run, 4)
        for o in obs:
            np.testing.assert_array_equal(client.select_action(o), local.select_action(o))


def test_idle_session_is_closed(tiny_run: Path) -> None:
    with running_server(tiny_run, ServeConfig(port=0, idle_timeout=0.2)) as srv:
        raw = Raw(url(srv))
        with pytest.raises(ConnectionClosed) as info:
            raw.recv()  # sends nothing: the server closes the session
        assert info.value.rcvd is not None and "idle" in info.value.rcvd.reason
        wait_until(lambda: srv.health()["sessions"] == 0)


def test_rate_limit_refuses_excess_requests_and_keeps_the_connection(tiny_run: Path) -> None:
    with (
        running_server(tiny_run, ServeConfig(port=0, rate=0.01, burst=2)) as srv,
        PolicyClient(url(srv)) as c,
    ):
        assert c.metadata["limits"]["burst"] == 2
        c.ping()
        c.ping()
        with pytest.raises(ServerError) as info:  # the bucket refills one request per 100 s
            c.ping()
        assert info.value.field == "rate"


def test_session_limit(tiny_run: Path) -> None:
    with running_server(tiny_run, ServeConfig(port=0, max_sessions=1)) as srv:
        with PolicyClient(url(srv)) as first:
            with pytest.raises(ServerError) as info:
                PolicyClient(url(srv))
            assert info.value.field == "sessions"
            assert first.ping()["type"] == "pong"
        wait_until(lambda: srv.health()["sessions"] == 0)
        with PolicyClient(url(srv)) as again:
            assert again.ping()["type"] == "pong"
