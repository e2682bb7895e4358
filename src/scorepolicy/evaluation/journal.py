"""Resumable evaluations: finished waves are appended to a JSON-lines journal beside the result JSON.

Line 1 is a header with the evaluation's fingerprint (task, seeds, n_envs, step limit, sampling settings);
every further line is one finished wave `{"wave": index, "records": [...]}`, flushed and fsynced as it
ends. Resuming reads the waves whose line is complete (a line cut by the interruption is ignored),
rewrites the journal without the cut line (atomically: a temporary file, fsynced, renamed over it, so
an interruption of the rewrite loses nothing) and runs only the other waves; since every episode draws
its noise from its own seed, the resumed result is the one an uninterrupted run gives.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.waves import Wave
from scorepolicy.files import atomic_write_bytes

JOURNAL_FORMAT = "scorepolicy/eval-episodes"


def journal_path_for(json_path: Path) -> Path:
    """The journal that goes with a result JSON: `a.json` → `a.episodes.jsonl`."""
    return json_path.with_name(f"{json_path.stem}.episodes.jsonl")


class EpisodeJournal:
    """Append-only record of finished waves (see the module docstring)."""

    def __init__(self, path: Path, fingerprint: dict[str, Any], *, resume: bool) -> None:
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint))  # normalised as it will be read back
        self.done: dict[int, list[dict[str, Any]]] = {}
        if resume and self.path.is_file():
            self.done = self._read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            header = {"format": JOURNAL_FORMAT, "fingerprint": self.fingerprint}
            atomic_write_bytes(self.path, (json.dumps(header) + "\n").encode())

    @property
    def n_done(self) -> int:
        """Episodes already in the journal."""
        return sum(len(r) for r in self.done.values())

    def _read(self) -> dict[int, list[dict[str, Any]]]:
        lines = self.path.read_text().splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            header = {}
        if header.get("format") != JOURNAL_FORMAT:
            raise ScorePolicyError(f"{self.path}: not an evaluation journal; delete it or drop --resume")
        old = header.get("fingerprint", {})
        for key in sorted(set(old) | set(self.fingerprint)):
            if old.get(key) != self.fingerprint.get(key):
                raise ScorePolicyError(
                    f"{self.path}: was written with {key}={old.get(key)!r}, this evaluation has "
                    f"{key}={self.fingerprint.get(key)!r}; use the same options or drop --resume"
                )
        done: dict[int, list[dict[str, Any]]] = {}
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line the interruption cut short
            done[int(entry["wave"])] = list(entry["records"])
        # Drop any cut-off tail so that appended lines start on a fresh line (temp file + rename).
        text = "".join(json.dumps(x) + "\n" for x in [header, *self._entries(done)])
        atomic_write_bytes(self.path, text.encode())
        return done

    @staticmethod
    def _entries(done: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return [{"wave": k, "records": v} for k, v in sorted(done.items())]

    def write(self, wave: Wave, records: list[dict[str, Any]]) -> None:
        """Append one finished wave (records already JSON-ready) and make it durable."""
        with self.path.open("a") as f:
            f.write(json.dumps({"wave": wave.index, "records": records}, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[wave.index] = records
