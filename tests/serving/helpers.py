"""Helpers of the serving tests: a tiny untrained run on disk (stochastic sampler, so actions depend on the
session's noise stream), the same policy in-process, seeded observations, and a raw msgpack websocket client."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tests.conftest import tiny_config, toy_windows
from websockets.sync.client import ClientConnection, connect

from scorepolicy.data.windows import min_max_stats
from scorepolicy.policies import ChunkPolicy, DiffusionConfig, ScorePolicy
from scorepolicy.serving import PolicyServer
from scorepolicy.serving.wire import pack, unpack

OBS_DIM = 3
TOKEN = "0123456789abcdef-test-token"


def make_run(directory: Path) -> Path:
    """A tiny seeded score policy with Euler-ancestral sampling (noise drives its actions), saved as a run."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_config(), diffusion=DiffusionConfig(sampler="euler_ancestral", nfe=3))
    policy = ScorePolicy(cfg)
    data = toy_windows()
    policy.set_normalization({"obs": min_max_stats(data.obs), "action": min_max_stats(data.actions)})
    policy.save_pretrained(directory)
    return directory


def local_policy(run: Path, seed: int | None = None) -> ChunkPolicy:
    """The run's policy in this process, prepared as the server prepares it, reset with `seed`."""
    policy = ChunkPolicy.from_pretrained(run).optimize_for_inference()
    policy.reset(seed=seed)
    return policy


def observations(n: int, seed: int, batch: int | None = None) -> np.ndarray:
    """n seeded float32 observations (each (OBS_DIM,) or (batch, OBS_DIM))."""
    shape = (n, OBS_DIM) if batch is None else (n, batch, OBS_DIM)
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def url(server: PolicyServer) -> str:
    return f"ws://127.0.0.1:{server.port}"


class Raw:
    """A bare websocket client sending arbitrary frames (the metadata frame is read on connect)."""

    def __init__(
        self, address: str, headers: dict[str, str] | None = None, read_metadata: bool = True
    ) -> None:
        self.ws: ClientConnection = connect(
            address, additional_headers=headers, compression=None, proxy=None
        ).__enter__()
        self.metadata = self.recv() if read_metadata else None

    def send(self, frame: bytes | str) -> None:
        self.ws.send(frame)

    def recv(self) -> dict[str, Any]:
        frame = self.ws.recv(timeout=30)
        assert isinstance(frame, bytes)
        return unpack(frame, 2**30)

    def call(self, msg: dict[str, Any] | bytes | str) -> dict[str, Any]:
        self.send(pack(msg) if isinstance(msg, dict) else msg)
        return self.recv()

    def close(self) -> None:
        self.ws.close()


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds (a bound, not a measured time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)
