"""Few-step distillation of a trained run: load the teacher and its training windows, train a consistency
student into a new run directory (an ordinary run: eval, latency, select work on it)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from scorepolicy.api.training import DataConfig, TrainJob, build_datasets, load_task_data
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import from_dict, read_json, to_dict
from scorepolicy.policies import ChunkPolicy
from scorepolicy.provenance import provenance
from scorepolicy.training.distill import DistillConfig, DistillResult, check_teacher, distill, make_student


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def teacher_record(run: Path) -> dict[str, Any]:
    """The teacher run's train_config.json (task, data, split), checked to name a task and data."""
    path = run / "train_config.json"
    meta = read_json(path) if path.is_file() else None
    if not isinstance(meta, dict) or not meta.get("task"):
        raise ScorePolicyError(
            f"{path}: missing or without 'task'; distil a run written by `scorepolicy train`"
        )
    return meta


def distill_run(run: Path, out: Path, cfg: DistillConfig, data: Path | None = None) -> DistillResult:
    """Distil the score policy in `run` into a `cfg.nfe`-step student in `out`, on the teacher's own training
    windows (its task, data and split from train_config.json; `data` overrides the dataset path)."""
    if out.exists() and any(out.iterdir()):
        raise ScorePolicyError(f"{out}: already exists and is not empty; choose another --out")
    teacher = ChunkPolicy.from_pretrained(run)
    check_teacher(teacher)
    meta = teacher_record(run)
    data_path = data or (Path(meta["data"]) if meta.get("data") else None)
    if data_path is not None and not data_path.exists():
        raise ScorePolicyError(f"{data_path}: the teacher's dataset is not there; pass --data PATH")
    dataset = from_dict(DataConfig, meta.get("dataset", {}), f"{run}/train_config.json: dataset")
    job = TrainJob(
        task=meta["task"], data=data_path, dataset=dataset, policy=dataclasses.replace(teacher.cfg)
    )
    task, episodes, _ = load_task_data(str(meta["task"]), job)
    train_data, _ = build_datasets(task, episodes, teacher.cfg, dataset)
    student = make_student(teacher, cfg.nfe)  # type: ignore[arg-type]
    record = {
        **{k: v for k, v in meta.items() if k not in ("train", "provenance")},
        "data": str(data_path) if data_path else None,
        "policy": to_dict(student.cfg),
        "distill": {
            "teacher": str(run.resolve()),
            "teacher_sha256": file_sha256(run / "model.safetensors"),
            "teacher_train": meta.get("train"),
            **to_dict(cfg),
        },
        "n_train_windows": len(train_data),
        "provenance": provenance(str(meta["task"])),
    }
    return distill(teacher, student, train_data, cfg, out, run_config=record)  # type: ignore[arg-type]
