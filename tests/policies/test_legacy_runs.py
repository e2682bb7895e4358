"""Run directories written before the per-family config classes still load and act the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scorepolicy.policies import ChunkPolicy

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.mark.parametrize("name", ["legacy_score_mlp", "legacy_msebc_mlp", "legacy_ddpm_mlp"])
def test_legacy_run_loads_and_gives_the_same_actions(name: str) -> None:
    run = FIXTURES / name
    expected = json.loads((run / "expected.json").read_text())
    kind = json.loads((run / "config.json").read_text())["policy"]["kind"]
    policy = ChunkPolicy.from_pretrained(run)
    assert policy.kind == kind
    obs, noise = torch.tensor(expected["obs"]), torch.tensor(expected["noise"])
    kwargs = {} if kind == "mse-bc" else {"noise": noise}
    actions = policy.predict_action_chunk(obs, **kwargs)
    assert torch.equal(actions, torch.tensor(expected["actions"]))
