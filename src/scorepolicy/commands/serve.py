"""The `scorepolicy serve` command: a trained run's policy behind a websocket server (needs the serve extra)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tyro

from scorepolicy.diffusion.samplers import SamplerName
from scorepolicy.errors import ScorePolicyError, check_field


@dataclass
class Serve:
    """Serve a trained policy to robots over websockets (msgpack frames, numpy arrays, no pickle).

    Binds 127.0.0.1 by default; any other --host needs --token-file. Clients: `from scorepolicy import
    PolicyClient`. GET /healthz answers with JSON. Ctrl-C or SIGTERM stops the server cleanly.
    """

    run: tyro.conf.Positional[Path]
    """Run directory written by `scorepolicy train` (or `improve`)."""
    host: str = "127.0.0.1"
    """Address to bind; a non-loopback address (e.g. 0.0.0.0) is refused without --token-file."""
    port: int = 8765
    """TCP port (0: any free port, printed at start)."""
    token_file: Path | None = None
    """File holding the shared secret (16+ characters, readable only by you: chmod 600) clients must send."""
    max_message_bytes: int = 4 * 2**20
    """Largest request in bytes; bigger ones get an error reply (beyond twice this the connection closes)."""
    rate: float = 200.0
    """Requests per second each client may make (token bucket); 0 = unlimited."""
    burst: int | None = None
    """Requests a client may make at once before --rate applies (default: one second's worth)."""
    idle_timeout: float = 300.0
    """Seconds without a request after which a client's session is closed."""
    max_sessions: int = 16
    """Clients served at once; more are refused (close code 1013, try again later)."""
    max_batch: int = 64
    """Most observations in one request."""
    threads: int = 1
    """torch threads of the single inference worker."""
    nfe: int | None = None
    """Denoiser evaluations per chunk (default: the run's config)."""
    sampler: SamplerName | None = None
    """Sampler override (default: the run's config)."""
    fps: float | None = None
    """Control rate the policy was trained at, reported to clients in the metadata (default: unknown)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Server log level (connections, refused requests, errors with tracebacks: on the server only)."""
    monitor: Path | None = None
    """Guard the policy with this calibrated monitor (`scorepolicy guard calibrate`): every select_action
    reply then carries the alarm (raised, windowed scores, thresholds, first alarm step)."""

    def __post_init__(self) -> None:
        check_field("--port", self.port, at_least=0, at_most=65535)
        check_field("--max-message-bytes", self.max_message_bytes, at_least=1024)
        check_field("--rate", self.rate, at_least=0)
        check_field("--burst", self.burst, at_least=1)
        check_field("--idle-timeout", self.idle_timeout, above=0)
        for flag, value in (
            ("--max-sessions", self.max_sessions),
            ("--max-batch", self.max_batch),
            ("--threads", self.threads),
        ):
            check_field(flag, value, at_least=1)
        check_field("--nfe", self.nfe, at_least=1)
        check_field("--fps", self.fps, above=0)


def server_config(cmd: Serve) -> Any:
    """The ServeConfig of the command (the token read from --token-file); refuses an unsafe bind."""
    from scorepolicy.serving import ServeConfig, read_token

    token = read_token(cmd.token_file) if cmd.token_file is not None else None
    config = ServeConfig(
        host=cmd.host,
        port=cmd.port,
        token=token,
        max_message_bytes=cmd.max_message_bytes,
        rate=cmd.rate,
        burst=cmd.burst,
        idle_timeout=cmd.idle_timeout,
        max_sessions=cmd.max_sessions,
        max_batch=cmd.max_batch,
        threads=cmd.threads,
        fps=cmd.fps,
    )
    config.validate()
    return config


def served_policy(cmd: Serve) -> Any:
    """The run's policy with the command's sampling options, guarded by --monitor when given."""
    from scorepolicy import api

    policy = api.load_policy(cmd.run, cmd.nfe, cmd.sampler)
    if cmd.monitor is None:
        return policy
    from scorepolicy.guard import GuardedPolicy, Monitor

    return GuardedPolicy(policy, Monitor.load(cmd.monitor))  # checks it was calibrated for this policy


def run_serve(cmd: Serve) -> None:
    """Serve until Ctrl-C / SIGTERM; prints the address once listening."""
    try:
        from scorepolicy.serving import PolicyServer, serve
    except ImportError as e:
        raise ScorePolicyError(
            f"serve needs the serve extra: pip install 'scorepolicy[serve]' ({e})"
        ) from None

    config = server_config(cmd)  # before loading the policy: an unsafe bind is refused at once
    policy = served_policy(cmd)
    logging.basicConfig(level=cmd.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ready(server: PolicyServer) -> None:
        host = f"[{config.host}]" if ":" in config.host else config.host
        print(
            f"serving {cmd.run} on ws://{host}:{server.port} (health: http://{host}:{server.port}/healthz); "
            "Ctrl-C stops",
            flush=True,
        )

    try:
        serve(cmd.run, config, policy=policy, on_ready=ready)
    except OSError as e:
        raise ScorePolicyError(f"--host {cmd.host} --port {cmd.port}: cannot listen there ({e})") from None
    print("server stopped")
