"""What the data-parallel tests run in each spawned rank (importable by name from a fresh process)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from scorepolicy.api.training import TrainJob, run_training

WRITE_EVENTS = ("open", "os.rename", "os.replace", "os.mkdir", "os.remove", "shutil.rmtree", "os.symlink")


def audited(job: TrainJob, log_dir: str) -> Any:
    """Train while recording (Python audit events) every write this rank makes under the run directory;
    the list goes to log_dir/rank<RANK>.json."""
    out = str(job.out.resolve())
    writes: list[str] = []

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event not in WRITE_EVENTS:
            return
        path = args[1] if event in ("os.rename", "os.replace", "os.symlink") else args[0]
        if not isinstance(path, (str, bytes, os.PathLike)):
            return
        path = os.path.abspath(os.fsdecode(path))
        if event == "open":
            mode, flags = args[1], args[2]
            if isinstance(mode, str):
                writing = any(c in mode for c in "wax+")
            else:
                writing = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if not writing:
                return
        if path.startswith(out):
            writes.append(f"{event} {path}")

    sys.addaudithook(hook)
    result = run_training(job)
    Path(log_dir, f"rank{os.environ['RANK']}.json").write_text(json.dumps(writes))
    return result


def interrupted(job: TrainJob, at_step: int) -> Any:
    """Train; rank 1 sends itself SIGTERM once rank 0's step-`at_step` snapshot exists (every rank must
    then stop after one common step, rank 0 checkpointing it)."""
    if os.environ["RANK"] == "1":
        target = job.out / "checkpoints" / f"step_{at_step:07d}"

        def watch() -> None:
            while not target.exists():
                time.sleep(0.002)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, daemon=True).start()
    return run_training(job)
