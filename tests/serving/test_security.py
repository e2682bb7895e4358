"""Security defaults: loopback unless a token is set, tokens checked (header or first message) with a
policy-violation close on failure, token files kept private; the CLI starts and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tests.serving.helpers import TOKEN, Raw, local_policy, observations, url
from websockets.exceptions import ConnectionClosed

from scorepolicy.cli import main
from scorepolicy.commands.serve import Serve
from scorepolicy.errors import ScorePolicyError
from scorepolicy.serving import (
    PolicyClient,
    PolicyServer,
    ServeConfig,
    ServerError,
    is_loopback,
    running_server,
)


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "192.168.1.5", "robot.local"])
def test_non_loopback_bind_without_token_is_refused(tiny_run: Path, host: str) -> None:
    with pytest.raises(ScorePolicyError, match="--token-file"):
        PolicyServer(tiny_run, ServeConfig(host=host, port=0))  # refused before loading or binding
    ServeConfig(host=host, token=TOKEN).validate()  # with a token the same address is allowed


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("10.0.0.1", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_cli_refuses_non_loopback_without_token(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(tiny_run), "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--token-file" in err and "0.0.0.0" in err


def test_token_file_must_be_private_and_long_enough(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "token"
    for content, mode, message in ((TOKEN, 0o644, "chmod 600"), ("", 0o600, "empty"), ("short", 0o600, "16")):
        token_file.write_text(content)
        os.chmod(token_file, mode)
        assert main(["serve", str(tiny_run), "--token-file", str(token_file), "--port", "0"]) == 2
        assert message in capsys.readouterr().err


def test_cli_defaults_match_the_server_config() -> None:
    cmd, config = Serve(run=Path("run")), ServeConfig()
    for name in (
        "host",
        "port",
        "max_message_bytes",
        "rate",
        "burst",
        "idle_timeout",
        "max_sessions",
        "max_batch",
        "threads",
        "fps",
    ):
        assert getattr(cmd, name) == getattr(config, name), name


@pytest.fixture(scope="module")
def token_server(tiny_run: Path) -> Iterator[PolicyServer]:
    with running_server(tiny_run, ServeConfig(port=0, token=TOKEN, auth_timeout=2.0)) as srv:
        yield srv


def assert_closed_for_policy_violation(raw: Raw) -> None:
    with pytest.raises(ConnectionClosed) as info:
        raw.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


def test_token_in_header(token_server: PolicyServer, tiny_run: Path) -> None:
    with PolicyClient(url(token_server), token=TOKEN) as client:
        assert client.metadata["token_required"] is True
        client.reset(seed=7)
        obs = observations(3, seed=7)
        local = local_policy(tiny_run, 7)
        for o in obs:
            np.testing.assert_array_equal(client.select_action(o), local.select_action(o))


@pytest.mark.parametrize("token", [None, "wrong-token-of-sufficient-length", TOKEN[:-1], TOKEN + "x"])
def test_bad_or_missing_token_is_refused(token_server: PolicyServer, token: str | None) -> None:
    with pytest.raises(ServerError) as info:  # the first frame is the error: no metadata is sent
        PolicyClient(url(token_server), token=token)
    assert info.value.field == "token"
    with PolicyClient(url(token_server), token=TOKEN) as good:  # the server keeps serving
        assert good.ping()["type"] == "pong"


def test_token_as_first_message(token_server: PolicyServer) -> None:
    raw = Raw(url(token_server), read_metadata=False)
    assert raw.call({"type": "auth", "token": TOKEN})["type"] == "metadata"
    assert raw.call({"type": "ping"})["type"] == "pong"
    raw.close()
    for first in ({"type": "auth", "token": "x" * 30}, {"type": "ping"}, {"type": "auth", "token": 5}):
        raw = Raw(url(token_server), read_metadata=False)
        reply = raw.call(first)
        assert reply["type"] == "error" and reply["field"] == "token"
        assert_closed_for_policy_violation(raw)


def test_bad_header_token_closes_with_policy_violation(token_server: PolicyServer) -> None:
    raw = Raw(url(token_server), headers={"Authorization": "Bearer nope-nope-nope-nope"}, read_metadata=False)
    reply = raw.recv()
    assert reply["type"] == "error" and reply["field"] == "token" and "metadata" not in str(reply)
    assert_closed_for_policy_violation(raw)


def test_cli_serves_until_interrupted(tiny_run: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scorepolicy.cli",
            "serve",
            str(tiny_run),
            "--port",
            "0",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "serving RUN on ws://127.0.0.1:PORT (health: ...); Ctrl-C stops"
        assert "ws://127.0.0.1:" in line, line + (proc.stderr.read() if proc.stderr else "")
        address = line.split()[3]
        with PolicyClient(address) as client:
            assert client.metadata["run"] == tiny_run.name
            assert client.select_action(np.zeros(3, np.float32)).shape == (2,)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "server stopped" in out and "Traceback" not in err
