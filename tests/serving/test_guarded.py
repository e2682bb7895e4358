"""`scorepolicy serve --monitor DIR`: the guard's alarm travels in each select_action reply, equal to the
in-process GuardedPolicy's; a monitor calibrated for another policy is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.guard.helpers import point_monitor, point_setup

from scorepolicy import api
from scorepolicy.commands.serve import Serve, served_policy
from scorepolicy.errors import ScorePolicyError
from scorepolicy.guard import GuardedPolicy, Monitor
from scorepolicy.serving import PolicyClient, ServeConfig, running_server
from scorepolicy.serving.session import alarm_dict


@pytest.fixture(scope="module")
def guarded_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    policy, task = point_setup()
    directory = tmp_path_factory.mktemp("guarded")
    policy.save_pretrained(directory / "run")
    point_monitor(policy, task).save(directory / "monitor")
    return directory / "run", directory / "monitor"


def test_alarm_travels_in_the_reply(guarded_run: tuple[Path, Path]) -> None:
    run, monitor_dir = guarded_run
    served = served_policy(Serve(run=run, monitor=monitor_dir))
    assert isinstance(served, GuardedPolicy)
    local = GuardedPolicy(api.load_policy(run), Monitor.load(monitor_dir))
    obs = np.random.default_rng(0).normal(size=(9, 2)).astype(np.float32)
    with (
        running_server(run, ServeConfig(port=0), policy=served) as srv,
        PolicyClient(f"ws://127.0.0.1:{srv.port}") as client,
    ):
        assert client.metadata["guard"]["window"] == local.monitor.window
        assert client.metadata["guard"]["n_samples"] == local.monitor.n_samples
        client.reset(seed=3)
        local.reset(seed=3)
        for o in obs:
            action = client.select_action(o)
            expected, alarm = local.select_action(o)
            np.testing.assert_array_equal(action, expected)
            assert client.last_alarm == alarm_dict(alarm)
        assert isinstance(client.last_alarm["raised"], bool)
        assert set(client.last_alarm["scores"]) == {"rnd", "ace"}
        chunk = client.predict_chunk(obs[:2])  # chunks come from the guarded policy's own policy
        assert chunk.shape == (4, 1) and client.last_alarm is None


def test_monitor_of_another_policy_is_refused(guarded_run: tuple[Path, Path], tmp_path: Path) -> None:
    monitor_dir = guarded_run[1]
    other, _ = point_setup()
    for p in other.parameters():
        p.data.add_(0.01)
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ScorePolicyError, match="calibrated for another policy"):
        served_policy(Serve(run=tmp_path / "other", monitor=monitor_dir))
