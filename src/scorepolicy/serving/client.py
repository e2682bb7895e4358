"""PolicyClient: the synchronous client of `scorepolicy serve` (websockets' sync client, msgpack frames)."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from scorepolicy.errors import ScorePolicyError
from scorepolicy.serving.protocol import OBS_KEY
from scorepolicy.serving.wire import WireError, pack, unpack

MAX_REPLY_BYTES = 256 * 2**20


class ServerError(ScorePolicyError):
    """The server refused a request: `field` names what was wrong, `message` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"server refused the request: {field}: {message}")
        self.field = field
        self.message = message


class PolicyClient:
    """A connection to a policy server: `metadata`, `reset`, `select_action`, `predict_chunk`, `ping`.

    One client is one session on the server (its own observation history and action queue). Errors the
    server reports raise `ServerError` (a ScorePolicyError) naming the field; the connection stays usable.
    `token` goes in the Authorization header; `timeout` bounds connecting and each reply (seconds); `proxy`
    is an HTTP/SOCKS proxy to connect through (default: none, even if the environment names one).
    """

    def __init__(
        self, url: str, token: str | None = None, *, timeout: float = 30.0, proxy: str | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        self.url = url
        self.timeout = timeout
        self.last_reply: dict[str, Any] = {}
        self._stack = contextlib.ExitStack()  # connect() as a context manager: websockets' current API
        try:
            self._ws: ClientConnection = self._stack.enter_context(
                connect(
                    url,
                    additional_headers=headers,
                    compression=None,
                    max_size=MAX_REPLY_BYTES,
                    open_timeout=timeout,
                    proxy=proxy,
                )
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as e:
            raise ScorePolicyError(
                f"{url}: cannot connect ({e}); is `scorepolicy serve` running there?"
            ) from None
        try:
            self.metadata: dict[str, Any] = self._receive()
        except BaseException:
            self.close()
            raise
        if self.metadata.get("type") != "metadata":
            self.close()
            raise ScorePolicyError(
                f"{url}: the server did not send a metadata frame first; is it a scorepolicy server?"
            )

    # ---------------------------------------------------------------- requests
    def reset(self, seed: int | None = None, goal: dict[str, Any] | None = None) -> None:
        """Start a new episode: the server forgets this session's history and queued actions; `seed`
        reseeds its sampling noise (same seed, same actions as an in-process policy reset with it)."""
        msg: dict[str, Any] = {"type": "reset"}
        if seed is not None:
            msg["seed"] = int(seed)
        if goal is not None:
            msg["goal"] = goal
        self.request(msg)

    def select_action(self, obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """The action for an observation (obs_dim,) or a batch (B, obs_dim), as `ChunkPolicy.select_action`."""
        return np.asarray(self.request({"type": "select_action", "obs": self._obs(obs)})["action"])

    def predict_chunk(
        self, obs: np.ndarray | dict[str, np.ndarray], noise: np.ndarray | None = None
    ) -> np.ndarray:
        """The whole action chunk (horizon, action_dim) for an observation history (n_obs_steps, obs_dim)
        (or batches of them); `noise` is an explicit initial noise (horizon, action_dim)."""
        msg: dict[str, Any] = {"type": "predict_chunk", "obs": self._obs(obs)}
        if noise is not None:
            msg["noise"] = np.asarray(noise, dtype=np.float32)
        return np.asarray(self.request(msg)["actions"])

    @property
    def last_alarm(self) -> dict[str, Any] | None:
        """The guard's alarm of the last select_action reply ({raised, scores, thresholds, first_alarm_step})
        when the server runs with a monitor (`scorepolicy serve --monitor DIR`), else None."""
        alarm = self.last_reply.get("alarm")
        return alarm if isinstance(alarm, dict) else None

    def ping(self) -> dict[str, Any]:
        """A round trip without inference; the reply holds the server's time for it (server_ms)."""
        return self.request({"type": "ping"})

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return its reply (ServerError for an error reply)."""
        try:
            self._ws.send(pack(msg))
        except ConnectionClosed as e:
            raise self._closed(e) from None
        reply = self._receive()
        self.last_reply = reply
        return reply

    def _obs(self, obs: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if isinstance(obs, dict):  # with cameras: {"state" (or OBS_KEY): state, camera key: uint8 frames}
            return {(OBS_KEY if k == "state" else k): np.asarray(v) for k, v in obs.items()}
        arr = np.asarray(obs)
        return {OBS_KEY: arr.astype(np.float32) if arr.dtype == np.float64 else arr}

    def _receive(self) -> dict[str, Any]:
        try:
            frame = self._ws.recv(timeout=self.timeout)
        except ConnectionClosed as e:
            raise self._closed(e) from None
        except TimeoutError:
            raise ScorePolicyError(f"{self.url}: no reply within {self.timeout:g} s") from None
        if isinstance(frame, str):
            raise ScorePolicyError(f"{self.url}: the server sent a text frame; is it a scorepolicy server?")
        try:
            reply = unpack(frame, MAX_REPLY_BYTES)
        except WireError as e:
            raise ScorePolicyError(f"{self.url}: malformed reply ({e})") from None
        if reply.get("type") == "error":
            raise ServerError(str(reply.get("field")), str(reply.get("message")))
        return reply

    def _closed(self, e: ConnectionClosed) -> ScorePolicyError:
        rcvd = e.rcvd
        why = f"code {rcvd.code}: {rcvd.reason}" if rcvd is not None else "no close frame"
        return ScorePolicyError(f"{self.url}: the server closed the connection ({why})")

    # ---------------------------------------------------------------- life cycle
    def close(self) -> None:
        """Close the connection (the server drops the session)."""
        self._stack.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
