"""The policy server: a websocket endpoint (msgpack frames) with one session per client, inference on one
worker thread off the event loop, an HTTP health check, and the limits of `ServeConfig`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import functools
import hmac
import itertools
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response

from scorepolicy.policies import ChunkPolicy
from scorepolicy.serving.config import ServeConfig
from scorepolicy.serving.metadata import build_metadata, policy_spec
from scorepolicy.serving.protocol import PROTOCOL_VERSION, message_id, parse_request
from scorepolicy.serving.session import Session, TokenBucket
from scorepolicy.serving.wire import WireError, pack, unpack

log = logging.getLogger("scorepolicy.serving")
T = TypeVar("T")
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_INTERNAL_ERROR = 1011
HEALTH_PATH = "/healthz"


def load_served_policy(run_dir: Path) -> ChunkPolicy:
    """A run's policy, frozen for fast inference (what the server copies into each session)."""
    return ChunkPolicy.from_pretrained(run_dir).optimize_for_inference()


class PolicyServer:
    """Serves one run's policy over websockets; `start()`/`stop()` inside an event loop, or `run()`."""

    def __init__(self, run_dir: str | Path, config: ServeConfig | None = None, *, policy: Any = None) -> None:
        self.config = config or ServeConfig()
        self.config.validate()  # before loading anything: a refused bind costs nothing
        self.run_dir = Path(run_dir)
        self.template = policy if policy is not None else load_served_policy(self.run_dir)
        self.spec = policy_spec(self.template, self.config.max_batch)
        self.metadata = build_metadata(self.template, self.run_dir, self.config, self.spec)
        self.port: int | None = None
        self._sessions: dict[int, Session] = {}
        self._ids = itertools.count(1)
        self._in_flight = 0
        self._started = time.monotonic()
        self._server: Server | None = None
        self._stop: asyncio.Event | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None  # inference: one thread
        self._copier: concurrent.futures.ThreadPoolExecutor | None = None  # new sessions' policy copies

    # ---------------------------------------------------------------- life cycle
    async def start(self) -> None:
        """Bind and start accepting clients (self.port is then the bound port)."""
        cfg = self.config
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="scorepolicy-infer",
            initializer=torch.set_num_threads,
            initargs=(cfg.threads,),
        )
        self._copier = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="scorepolicy-copy"
        )
        self._stop = asyncio.Event()
        self._server = await ws_serve(
            self._handler,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            max_size=2 * cfg.max_message_bytes,
            compression=None,
            server_header="scorepolicy",
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info(
            "serving %s on ws://%s:%d (token %s)",
            self.run_dir,
            cfg.host,
            self.port,
            "required" if cfg.token else "off",
        )

    async def stop(self) -> None:
        """Close every connection (1001 going away) and the listening socket; drop queued inference."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for executor in (self._executor, self._copier):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
        log.info("server stopped")

    def request_stop(self) -> None:
        """Ask `run()` to return (call on the server's event loop, e.g. via call_soon_threadsafe)."""
        if self._stop is not None:
            self._stop.set()

    async def run(self, on_ready: Callable[[PolicyServer], None] | None = None) -> None:
        """Serve until `request_stop()`, or SIGINT/SIGTERM when run in the main thread; then stop cleanly."""
        await self.start()
        loop = asyncio.get_running_loop()
        signals: list[signal.Signals] = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):  # no signal handlers here
                    loop.add_signal_handler(sig, self.request_stop)
                    signals.append(sig)
        try:
            if on_ready is not None:
                on_ready(self)
            assert self._stop is not None
            await self._stop.wait()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            await self.stop()

    # ---------------------------------------------------------------- HTTP
    def _process_request(self, connection: ServerConnection, request: HttpRequest) -> Response | None:
        """Answer GET /healthz with JSON (no token needed, nothing about the policy); others go on to the
        websocket handshake."""
        if request.path.split("?")[0] != HEALTH_PATH:
            return None
        body = json.dumps(self.health()).encode()
        headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return Response(200, "OK", headers, body)

    def health(self) -> dict[str, Any]:
        """The health report: status, sessions, whether inference is running, uptime."""
        return {
            "status": "ok",
            "protocol": PROTOCOL_VERSION,
            "sessions": len(self._sessions),
            "max_sessions": self.config.max_sessions,
            "inference_in_flight": self._in_flight,
            "uptime_s": round(time.monotonic() - self._started, 3),
        }

    # ---------------------------------------------------------------- sessions
    async def _in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the inference thread without blocking the event loop."""
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        finally:
            self._in_flight -= 1

    async def _handler(self, ws: ServerConnection) -> None:
        """One connection: authenticate, open a session, answer requests until it closes or idles."""
        peer = ":".join(str(part) for part in ws.remote_address[:2]) if ws.remote_address else "?"
        try:
            if not await self._authenticate(ws, peer):
                return
        except ConnectionClosed:
            log.info("connection from %s closed before authenticating", peer)
            return
        cfg = self.config
        if len(self._sessions) >= cfg.max_sessions:
            log.warning("%s refused: %d sessions open", peer, len(self._sessions))
            await self._refuse(
                ws,
                peer,
                "sessions",
                f"the server is at its limit of {cfg.max_sessions} sessions; try again later",
                CLOSE_TRY_AGAIN_LATER,
            )
            return
        session = Session(next(self._ids), peer, TokenBucket(cfg.rate, cfg.bucket_size))
        self._sessions[session.id] = session
        log.info("session %d opened by %s", session.id, peer)
        try:
            # the session's own policy copy is made beside the inference thread (the template is never run)
            loop = asyncio.get_running_loop()
            session.policy = await loop.run_in_executor(self._copier, copy.deepcopy, self.template)
            await ws.send(pack({**self.metadata, "session": session.id}))
            await self._serve_session(ws, session)
        except ConnectionClosed as e:
            log.info("session %d: connection closed (%s)", session.id, e)
        except Exception:
            log.exception("session %d: internal error; closing the connection", session.id)
            with contextlib.suppress(Exception):
                await ws.close(CLOSE_INTERNAL_ERROR, "internal server error")
        finally:
            del self._sessions[session.id]
            log.info("session %d closed after %d requests", session.id, session.requests)

    async def _serve_session(self, ws: ServerConnection, session: Session) -> None:
        idle = self.config.idle_timeout
        while True:
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=idle)
            except asyncio.TimeoutError:
                log.info("session %d idle for %g s; closing", session.id, idle)
                await ws.close(1000, f"idle for more than {idle:g} s")
                return
            reply = await self._reply(session, frame)
            await ws.send(pack(reply))

    async def _reply(self, session: Session, frame: bytes | str) -> dict[str, Any]:
        """The reply to one frame: the policy's answer, or an error naming the field (never a traceback)."""
        t0 = time.perf_counter()
        session.requests += 1
        msg_id: int | str | None = None
        try:
            if not session.bucket.take():
                raise WireError("rate", f"over {self.config.rate:g} requests/s; slow down")
            if isinstance(frame, str):
                raise WireError("frame", "text frames are not accepted; send msgpack in a binary frame")
            msg = unpack(frame, self.config.max_message_bytes)
            msg_id = message_id(msg)
            req = parse_request(msg, self.spec)
            if req.type in ("ping", "auth"):
                reply: dict[str, Any] = {"type": "pong" if req.type == "ping" else "auth"}
            elif session.answers_inline(req):
                reply = session.run(req)
            else:
                reply = await self._in_worker(session.run, req)
        except WireError as e:
            log.warning(
                "session %d (%s): refused request: %s: %s", session.id, session.peer, e.field, e.message
            )
            reply = {"type": "error", "field": e.field, "message": e.message}
        except Exception:
            log.exception("session %d: internal error while answering a request", session.id)
            reply = {
                "type": "error",
                "field": "server",
                "message": "internal error; it is logged on the server",
            }
        reply["server_ms"] = (time.perf_counter() - t0) * 1000.0
        if msg_id is not None:
            reply["id"] = msg_id
        return reply

    # ---------------------------------------------------------------- authentication
    async def _authenticate(self, ws: ServerConnection, peer: str) -> bool:
        """True when no token is needed or the client presents it (Authorization header, else a first
        `auth` message); otherwise an error reply naming 'token' and close code 1008."""
        token = self.config.token
        if token is None:
            return True
        header = ws.request.headers.get("Authorization") if ws.request is not None else None
        if header is not None:
            scheme, _, given = header.partition(" ")
            if scheme.lower() == "bearer" and same_token(given.strip(), token):
                return True
            return await self._refuse(ws, peer, "token", "wrong token in the Authorization header")
        try:
            frame = await asyncio.wait_for(ws.recv(), timeout=self.config.auth_timeout)
            msg = unpack(frame, self.config.max_message_bytes) if isinstance(frame, bytes) else {}
        except (asyncio.TimeoutError, WireError):
            msg = {}
        sent = msg.get("token") if msg.get("type") == "auth" else None
        if not isinstance(sent, str):
            return await self._refuse(
                ws,
                peer,
                "token",
                "this server needs a token: an Authorization: Bearer header or a first message "
                "{type: 'auth', token: ...}",
            )
        if not same_token(sent, token):
            return await self._refuse(ws, peer, "token", "wrong token")
        return True

    async def _refuse(
        self, ws: ServerConnection, peer: str, field: str, message: str, code: int = CLOSE_POLICY_VIOLATION
    ) -> bool:
        """Send an error reply and close the connection with `code`; False (for _authenticate)."""
        log.warning("connection from %s refused: %s: %s", peer, field, message)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(pack({"type": "error", "field": field, "message": message}))
            await ws.close(code, message[:120])
        return False


def same_token(given: str, expected: str) -> bool:
    """Constant-time comparison of two tokens."""
    return hmac.compare_digest(given.encode(), expected.encode())


def serve(
    run_dir: str | Path,
    config: ServeConfig | None = None,
    *,
    policy: Any = None,
    on_ready: Callable[[PolicyServer], None] | None = None,
) -> None:
    """Serve a run's policy until Ctrl-C or SIGTERM (blocking); `policy` overrides the one loaded from
    the run (e.g. with another NFE); `on_ready(server)` is called once it listens."""
    server = PolicyServer(run_dir, config, policy=policy)
    asyncio.run(server.run(on_ready))


@contextlib.contextmanager
def running_server(
    run_dir: str | Path, config: ServeConfig | None = None, *, policy: Any = None
) -> Iterator[PolicyServer]:
    """A server running on a background thread for the block (tests, notebooks); stopped on exit."""
    server = PolicyServer(run_dir, config, policy=policy)
    ready = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()

    def main() -> None:
        try:
            loop.run_until_complete(server.run(lambda _: ready.set()))
        except BaseException as e:
            failure.append(e)
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=main, name="scorepolicy-server", daemon=True)
    thread.start()
    ready.wait()
    if failure:
        raise failure[0]
    try:
        yield server
    finally:
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(server.request_stop)
        thread.join(timeout=30)
