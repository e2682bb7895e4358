"""Served actions equal the in-process policy's, per session, under concurrency; metadata describes the run."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import numpy as np
import torch
from tests.serving.helpers import local_policy, observations, url, wait_until

import scorepolicy
from scorepolicy.files import sha256_file
from scorepolicy.serving import OBS_KEY, PolicyClient, PolicyServer


def test_policy_client_is_exported_lazily() -> None:
    assert scorepolicy.PolicyClient is PolicyClient


def test_queued_actions_counts_what_select_action_will_pop(tiny_run: Path) -> None:
    policy = local_policy(tiny_run, 0)  # n_action_steps = 2
    counts = []
    for o in observations(5, seed=0):
        counts.append(policy.queued_actions)
        policy.select_action(o)
    assert counts == [0, 1, 0, 1, 0]
    policy.reset()
    assert policy.queued_actions == 0


def test_metadata_describes_the_run(server: PolicyServer, tiny_run: Path) -> None:
    with PolicyClient(url(server)) as client:
        meta = client.metadata
    assert meta["model_sha256"] == sha256_file(tiny_run / "model.safetensors")
    assert meta["observation"] == {OBS_KEY: {"shape": [3], "dtype": "float32"}}
    assert meta["action"] == {"shape": [2], "dtype": "float32"}
    assert (meta["n_obs_steps"], meta["horizon"], meta["n_action_steps"]) == (2, 4, 2)
    assert meta["policy"] == {"kind": "score", "denoiser": "mlp", "sampler": "euler_ancestral", "nfe": 3}
    assert meta["limits"]["max_message_bytes"] == 4096
    assert meta["protocol"] == 1 and meta["token_required"] is False


def test_round_trip_equals_in_process_policy(server: PolicyServer, tiny_run: Path) -> None:
    obs = observations(12, seed=1)
    served = {}
    with PolicyClient(url(server)) as client:
        for seed in (5, 6):  # a second episode: reset must clear history and queue, and reseed
            client.reset(seed=seed)
            served[seed] = np.stack([client.select_action(o) for o in obs])
            local = local_policy(tiny_run, seed)
            expected = np.stack([local.select_action(o) for o in obs])
            assert served[seed].dtype == np.float32 and served[seed].shape == (12, 2)
            np.testing.assert_array_equal(served[seed], expected)
            assert client.last_reply["server_ms"] >= client.last_reply["infer_ms"] >= 0
    assert not np.array_equal(served[5], served[6])  # the seed reached the session's noise stream


def test_batched_observations_round_trip(server: PolicyServer, tiny_run: Path) -> None:
    obs = observations(6, seed=2, batch=3)
    with PolicyClient(url(server)) as client:
        client.reset(seed=9)
        served = np.stack([client.select_action(o) for o in obs])
    local = local_policy(tiny_run, 9)
    np.testing.assert_array_equal(served, np.stack([local.select_action(o) for o in obs]))


def test_predict_chunk_with_and_without_noise(server: PolicyServer, tiny_run: Path) -> None:
    history = observations(2, seed=3)  # (n_obs_steps, obs_dim)
    noise = np.random.default_rng(4).normal(size=(4, 2)).astype(np.float32)
    local = local_policy(tiny_run, 11)
    with PolicyClient(url(server)) as client:
        client.reset(seed=11)
        chunk = client.predict_chunk(history)
        steered = client.predict_chunk(history, noise=noise)
    with torch.inference_mode():
        expected = local.predict_action_chunk(torch.from_numpy(history[None]))[0].numpy()
        expected_steered = local.predict_action_chunk(
            torch.from_numpy(history[None]), noise=torch.from_numpy(noise[None])
        )[0].numpy()
    np.testing.assert_array_equal(chunk, expected)
    np.testing.assert_array_equal(steered, expected_steered)
    assert chunk.shape == (4, 2) and not np.array_equal(chunk, steered)


def test_two_sessions_keep_separate_histories(server: PolicyServer, tiny_run: Path) -> None:
    obs_a, obs_b = observations(10, seed=10), observations(10, seed=20)
    local_a, local_b = local_policy(tiny_run, 1), local_policy(tiny_run, 2)
    with PolicyClient(url(server)) as a, PolicyClient(url(server)) as b:
        assert a.metadata["session"] != b.metadata["session"]
        a.reset(seed=1)
        b.reset(seed=2)
        for oa, ob in zip(obs_a, obs_b):  # interleaved: each step of one session between the other's
            np.testing.assert_array_equal(a.select_action(oa), local_a.select_action(oa))
            np.testing.assert_array_equal(b.select_action(ob), local_b.select_action(ob))


def test_concurrent_clients_are_all_answered_correctly(server: PolicyServer, tiny_run: Path) -> None:
    k, m = 4, 20
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def client_loop(i: int) -> None:
        try:
            with PolicyClient(url(server)) as client:
                client.reset(seed=100 + i)
                results[i] = np.stack([client.select_action(o) for o in observations(m, seed=i)])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and sorted(results) == list(range(k))
    for i in range(k):
        local = local_policy(tiny_run, 100 + i)
        expected = np.stack([local.select_action(o) for o in observations(m, seed=i)])
        np.testing.assert_array_equal(results[i], expected)
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=30).read())
    assert health["status"] == "ok"
    wait_until(lambda: server.health()["sessions"] == 0)  # every session is dropped once its client left
