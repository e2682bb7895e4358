"""Fixtures of the serving tests: the tiny run, and a loopback server on a port chosen by the OS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from tests.serving.helpers import make_run

from scorepolicy.serving import PolicyServer, ServeConfig, running_server


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("serving") / "run")


@pytest.fixture(scope="module")
def server(tiny_run: Path) -> Iterator[PolicyServer]:
    """A tokenless loopback server without a rate limit (the fault tests send many frames)."""
    torch.set_num_threads(1)
    with running_server(tiny_run, ServeConfig(port=0, rate=0, max_message_bytes=4096)) as srv:
        yield srv
