"""Provenance: the commit (and whether the tree was dirty), package versions, command line and time."""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

import pytest

from scorepolicy.errors import ScorePolicyError
from scorepolicy.provenance import env_packages, git_state, provenance, require_same_code


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_git_state_names_the_commit_and_a_dirty_tree(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = _git(repo, "rev-parse", "HEAD").strip()
    assert git_state(repo) == (head, False)
    (repo / "untracked.txt").write_text("runs and results do not make the code dirty")
    git_state.cache_clear()
    assert git_state(repo) == (head, False)
    (repo / "a.py").write_text("x = 2\n")
    git_state.cache_clear()
    assert git_state(repo) == (head, True)
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git_state(outside) == (None, None)


def test_provenance_records_versions_command_and_the_task_simulator() -> None:
    prov = provenance("pusht", argv=["scorepolicy", "eval", "runs/x"])
    assert prov["command"] == ["scorepolicy", "eval", "runs/x"]
    assert prov["versions"]["torch"] == importlib.metadata.version("torch")
    assert prov["versions"]["numpy"] == importlib.metadata.version("numpy")
    assert set(prov["versions"]) == {"scorepolicy", "torch", "numpy", "gymnasium", "gym-pusht"}
    assert {"commit", "dirty", "python", "platform", "time"} <= set(prov)
    assert env_packages("metaworld-mt10") == ("metaworld", "mujoco") and env_packages("obstacles") == ()
    both = provenance(["pusht", "metaworld-mt10"])
    assert {"gym-pusht", "metaworld", "mujoco"} <= set(both["versions"])


def test_merging_refuses_parts_made_by_different_code() -> None:
    a = {"commit": "abc", "dirty": False, "versions": {"torch": "2.13"}}
    require_same_code({"one": a, "two": dict(a)}, "diversity.json")
    for other in (
        {**a, "commit": "def"},
        {**a, "dirty": True},
        {**a, "versions": {"torch": "2.12"}},
        None,
    ):
        with pytest.raises(ScorePolicyError, match="'two'"):
            require_same_code({"one": a, "two": other}, "diversity.json")
