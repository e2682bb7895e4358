"""Serving a policy with cameras: the metadata names the frames, requests carry them, others are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.policies.test_vision import image_config

from scorepolicy.data.windows import min_max_stats
from scorepolicy.policies import ChunkPolicy, ScorePolicy
from scorepolicy.serving import PolicyClient, ServeConfig, running_server
from scorepolicy.serving.client import ServerError


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    policy = ScorePolicy(image_config())
    stats = min_max_stats(np.array([[-1.0, -1.0], [1.0, 1.0]], np.float32))
    policy.set_normalization({"obs": stats, "action": stats})
    run = tmp_path_factory.mktemp("serving-images") / "run"
    policy.save_pretrained(run)
    return run


def step(seed: int, batch: int | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)
    return {
        "state": rng.uniform(-1, 1, (*lead, 2)).astype(np.float32),
        "cam": rng.integers(0, 256, (*lead, 32, 32, 3), dtype=np.uint8),
    }


def test_served_image_policy_matches_the_local_one_and_refuses_bad_frames(image_run: Path) -> None:
    torch.set_num_threads(1)
    local = ChunkPolicy.from_pretrained(image_run).optimize_for_inference()
    local.reset(seed=3)
    with (
        running_server(image_run, ServeConfig(port=0, rate=0)) as srv,
        PolicyClient(f"ws://127.0.0.1:{srv.port}") as client,
    ):
        assert client.metadata["observation"]["cam"] == {"shape": [32, 32, 3], "dtype": "uint8"}
        client.reset(seed=3)
        for i in range(3):
            np.testing.assert_allclose(client.select_action(step(i)), local.select_action(step(i)), atol=1e-5)
        history = {"state": np.zeros((2, 2), np.float32), "cam": np.zeros((2, 32, 32, 3), np.uint8)}
        assert client.predict_chunk(history).shape == (4, 2)
        bad = step(0)
        bad["cam"] = bad["cam"][:16]
        with pytest.raises(
            ServerError, match=r"expected uint8 frames of shape \(32, 32, 3\), got uint8 \(16, 32, 3\)"
        ):
            client.select_action(bad)
        with pytest.raises(ServerError, match=r"obs\.cam: missing"):
            client.select_action({"state": np.zeros(2, np.float32)})
        with pytest.raises(ServerError, match="unknown observation key"):
            client.select_action({**step(0), "wrist": np.zeros((32, 32, 3), np.uint8)})
        with pytest.raises(ServerError, match=r"obs\.cam: missing"):
            client.select_action(np.zeros(2, np.float32))  # the client sends the array as the state
