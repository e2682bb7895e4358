"""Server settings and the security checks made before anything binds."""

from __future__ import annotations

import ipaddress
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from scorepolicy.errors import ScorePolicyError, check_field

MIN_TOKEN_CHARS = 16


@dataclass
class ServeConfig:
    """How the policy server listens and what it allows each client."""

    host: str = "127.0.0.1"
    """Address to bind: loopback by default; any other address needs a token."""
    port: int = 8765
    """TCP port (0: any free port, see PolicyServer.port)."""
    token: str | None = None
    """Shared secret clients must present (Authorization: Bearer header or a first `auth` message)."""
    max_message_bytes: int = 4 * 2**20
    """Largest request; bigger ones get an error reply (beyond twice this the connection is closed, 1009)."""
    rate: float = 200.0
    """Requests per second each connection may make (a token bucket); 0 = unlimited."""
    burst: int | None = None
    """Requests a connection may make at once before the rate applies (default: one second's worth)."""
    idle_timeout: float = 300.0
    """Seconds without a request after which a session is closed."""
    max_sessions: int = 16
    """Sessions (connected clients) served at once; more are refused with close code 1013."""
    max_batch: int = 64
    """Most observations in one request."""
    threads: int = 1
    """torch threads of the inference worker (requests are run one at a time on one worker thread)."""
    fps: float | None = None
    """Control rate the policy was trained at, reported in the metadata (None: unknown)."""
    auth_timeout: float = 10.0
    """Seconds a client has to send its `auth` message when the token is not in a header."""

    @property
    def bucket_size(self) -> int:
        """Requests a connection may make at once: `burst`, or one second's worth of `rate` (at least 1)."""
        return self.burst if self.burst is not None else max(1, math.ceil(self.rate))

    def validate(self) -> None:
        """One-line errors for out-of-range settings and a non-loopback bind without a token."""
        check_field("port", self.port, at_least=0, at_most=65535)
        check_field("max_message_bytes", self.max_message_bytes, at_least=1024)
        check_field("rate", self.rate, at_least=0)
        check_field("burst", self.burst, at_least=1)
        for name in ("idle_timeout", "auth_timeout"):
            check_field(name, getattr(self, name), above=0)
        for name in ("max_sessions", "max_batch", "threads"):
            check_field(name, getattr(self, name), at_least=1)
        check_field("fps", self.fps, above=0)
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise ScorePolicyError(
                f"token: must be at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 16`)"
            )
        if self.token is None and not is_loopback(self.host):
            raise ScorePolicyError(
                f"--host {self.host or '(all interfaces)'}: not a loopback address; serving beyond this machine "
                "needs --token-file FILE holding a shared secret that clients send"
            )


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback IP addresses (127.0.0.0/8, ::1); False for anything else."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or "": it may resolve to (or mean) any interface


def read_token(path: Path) -> str:
    """The token in `path` (surrounding whitespace stripped); one-line errors for a missing or empty file,
    or one that other users can read."""
    try:
        token = path.read_text().strip()
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as e:
        raise ScorePolicyError(f"--token-file {path}: cannot be read ({e})") from None
    if not token:
        raise ScorePolicyError(
            f"--token-file {path}: is empty; write a secret of {MIN_TOKEN_CHARS}+ characters to it"
        )
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ScorePolicyError(f"--token-file {path}: other users can read it; chmod 600 {path}")
    return token
