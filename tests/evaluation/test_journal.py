"""The evaluation journal: resuming rewrites it atomically (temporary file, fsync, rename), so a failure
during the rewrite leaves the journal as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scorepolicy.evaluation.journal import EpisodeJournal
from scorepolicy.evaluation.waves import Wave

FINGERPRINT = {"task": "point", "n_envs": 2}


def _journal_with_cut_line(path: Path) -> str:
    journal = EpisodeJournal(path, FINGERPRINT, resume=False)
    for k in range(3):
        journal.write(Wave(k, (2 * k, 2 * k + 1), (None, None)), [{"seed": 2 * k}, {"seed": 2 * k + 1}])
    with path.open("a") as f:
        f.write('{"wave": 3, "rec')  # the line an interruption cut short
    return path.read_text()


def test_resume_rewrites_the_journal_by_rename(tmp_path: Path) -> None:
    path = tmp_path / "eval.episodes.jsonl"
    before = _journal_with_cut_line(path)
    inode = path.stat().st_ino
    journal = EpisodeJournal(path, FINGERPRINT, resume=True)
    assert sorted(journal.done) == [0, 1, 2] and journal.n_done == 6
    assert path.read_text() == before[: before.rindex('{"wave": 3')]  # the cut line is gone
    assert path.stat().st_ino != inode  # a new file renamed over the old one, not rewritten in place
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    journal.write(Wave(3, (6, 7), (None, None)), [{"seed": 6}, {"seed": 7}])
    assert json.loads(path.read_text().splitlines()[-1])["wave"] == 3


def test_a_failed_rewrite_leaves_the_journal_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "eval.episodes.jsonl"
    before = _journal_with_cut_line(path)

    def no_rename(src: str, dst: str) -> None:
        raise OSError("disk pulled out")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="disk pulled out"):
        EpisodeJournal(path, FINGERPRINT, resume=True)
    monkeypatch.undo()
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert sorted(EpisodeJournal(path, FINGERPRINT, resume=True).done) == [0, 1, 2]
