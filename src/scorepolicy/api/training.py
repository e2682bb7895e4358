"""The training pipeline: load a task's demonstrations, split them into windows, build the policy, train."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import tyro

from scorepolicy.core.episodes import Episodes
from scorepolicy.core.task import Task
from scorepolicy.data.dataset_task import DATASET_TASK, detect_task, load_dataset_task
from scorepolicy.data.formats import DataFormat, OpenedDataset, open_dataset
from scorepolicy.data.lerobot_video import FrameOptions
from scorepolicy.data.windows import WindowDataset, min_max_stats, split_episodes
from scorepolicy.envs.registry import TaskName, get_task
from scorepolicy.errors import ScorePolicyError, check_field
from scorepolicy.files import to_dict
from scorepolicy.policies import ChunkPolicy, PolicyConfig, build_policy
from scorepolicy.provenance import provenance
from scorepolicy.training import TrainConfig, TrainResult, train
from scorepolicy.training.distributed import env_ranks
from scorepolicy.training.launch import launch_ranks
from scorepolicy.training.loop import TrainingInterrupted

DEFAULT_PUSHT_ZARR = Path("../shared/data/pusht_cchi_v7_replay.zarr")
_PUSHT_RECIPE: dict[str, Any] = {
    "dataset.max_train_episodes": 90,
    "train.steps": 40_000,
    "train.checkpoint_every": 5_000,
}
RECIPES: dict[str, dict[str, Any]] = {
    "pusht": dict(_PUSHT_RECIPE),
    "pusht-keypoints": {
        **_PUSHT_RECIPE,
        "policy.denoiser": "unet1d",
        "train.steps": 8_000,
        "train.checkpoint_every": 1_000,
        "train.keep_snapshots": 8,
    },
    "pusht-image": {
        **_PUSHT_RECIPE,
        "policy.denoiser": "unet1d",
        "train.batch_size": 64,
        "train.steps": 13_700,
        "train.checkpoint_every": 3_425,
        "train.keep_snapshots": 4,
    },
    "obstacles": {},
    "target-image": {"policy.vision.crop": 28, "train.steps": 1_500, "train.batch_size": 64},
    "metaworld-mt10": {
        "policy.denoiser": "mode",
        "policy.n_obs_steps": 1,
        "train.batch_size": 128,
        "train.steps": 8_000,
    },
}
"""Per-task training defaults that differ from the generic ones (the settings of the task's documented
results: Diffusion Policy's low-dim Push-T protocol with the 40k-step benchmark budget for `pusht`, and for
`pusht-keypoints` the recipe settled by `benchmarks/pusht_ablation.py` and run by `benchmarks/pusht.py
--protocol dp`: DP's 1-D conv U-Net (at CPU widths) for 8 k steps, about an hour on one core, every 1 k-step
snapshot kept for `select`; for `pusht-image` the run of `benchmarks/pusht_image.py`: the U-Net with the CPU
CNN at batch 64 for 13.7 k steps, about 96 minutes on one core; the MT10 section of the README). Flags given on
the command line override them."""


def flag_name(path: str) -> str:
    """The command-line flag of a dotted field path (`train.batch_size` → `--train.batch-size`)."""
    return "--" + path.replace("_", "-")


def recipe_help() -> str:
    """One line per task with its recipe, for `scorepolicy train --help`."""
    lines = []
    for task, recipe in RECIPES.items():
        flags = " ".join(f"{flag_name(k)} {v}" for k, v in recipe.items()) or "the generic defaults"
        lines.append(f"{task}: {flags}")
    return "; ".join(lines)


TASK_HELP = (
    "Task (observation mapping, evaluation env, and its training recipe). Default: from --data: Push-T for a "
    "replay zarr with 'state', else a simulator-free dataset task (LeRobot / robomimic data; sizes from the "
    "data). With --task, the task's recipe sets the defaults shown below; flags still override it. Recipes: "
    f"{recipe_help()}."
)


@dataclass
class DataConfig:
    """How to generate (when the task has an expert and no path is given) and split the demonstrations."""

    n_demos: int = 100
    """Expert demonstrations to generate when the task has a scripted expert and no path is given."""
    demo_seed: int = 0
    """Seed of the generated demonstrations."""
    val_fraction: float = 0.02
    """Fraction of episodes held out for the validation loss."""
    max_train_episodes: int | None = None
    """Cap on training episodes after the split (Diffusion Policy's low-dim Push-T protocol: 90)."""
    split_seed: int = 42
    """Seed of the train/validation split."""
    format: DataFormat | None = None
    """Format of --data (default: detected from the path)."""
    obs_keys: tuple[str, ...] | None = None
    """Dataset task: observation features (default: observation.state + other 1-D observation.* vectors)."""
    cameras: FrameOptions = field(default_factory=FrameOptions)
    """Dataset task: camera frames (used when the dataset has them on disk), their size and memory budget."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "--dataset.") -> None:
        """One-line errors naming the flag of any value out of its range."""
        check_field(f"{prefix}n-demos", self.n_demos, at_least=1)
        check_field(f"{prefix}demo-seed", self.demo_seed, at_least=0)
        check_field(f"{prefix}val-fraction", self.val_fraction, at_least=0, below=1)
        check_field(f"{prefix}max-train-episodes", self.max_train_episodes, at_least=1)
        check_field(f"{prefix}split-seed", self.split_seed, at_least=0)


@dataclass
class TrainJob:
    """A whole training run: task, data, policy and optimisation."""

    task: Annotated[TaskName | None, tyro.conf.arg(help=TASK_HELP)] = None
    """Task (observation mapping and evaluation env, and its training recipe); see TASK_HELP."""
    data: Path | None = None
    """Dataset: LeRobot v2.1/v3.0 dir, replay zarr or robomimic HDF5. Obstacles: unset to generate demos."""
    out: Path = Path("runs/run")
    """Run directory: checkpoints, config.json, metrics.csv, TensorBoard logs."""
    resume: bool = False
    """Continue the run in `out` exactly where its last checkpoint stopped."""
    dataset: DataConfig = field(default_factory=DataConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """One-line errors naming the flag of any setting out of its range (parse-time checks)."""
        self.dataset.validate()
        self.policy.validate()
        self.train.validate()


def load_episodes(task: Task, path: Path | OpenedDataset | None, data: DataConfig) -> Episodes:
    """Demonstrations for `task`: read from `path` (a replay zarr), or generated by its scripted expert."""
    if task.name == "obstacles" and path is None:
        from scorepolicy.envs.obstacles import generate_obstacle_demos

        return generate_obstacle_demos(data.n_demos, seed=data.demo_seed)
    if task.name == "target-image" and path is None:
        from scorepolicy.envs.target_image import generate_target_demos

        return generate_target_demos(data.n_demos, seed=data.demo_seed)
    if path is None:
        hint = "scorepolicy data generate metaworld --out data/mt10" if task.goal_spec else DEFAULT_PUSHT_ZARR
        raise ScorePolicyError(f"task '{task.name}' needs --data PATH (e.g. {hint})")
    dataset = path if isinstance(path, OpenedDataset) else open_dataset(path, "zarr")
    if dataset.format != "zarr":
        raise ScorePolicyError(
            f"{dataset.path}: task '{task.name}' trains on a replay zarr, not {dataset.format} data; "
            f"pass a .zarr store or --task {DATASET_TASK}"
        )
    return dataset.load(images=bool(task.image_shapes))


def load_task_data(
    task_name: str, job: TrainJob, dataset: OpenedDataset | None = None
) -> tuple[Task, Episodes, dict[str, Any]]:
    """The task and its episodes (data from a path is opened once, validated first and refused with the
    report)."""
    if dataset is None and job.data is not None:
        dataset = open_dataset(job.data, job.dataset.format)
    if dataset is not None:
        dataset.require_valid(job.policy.horizon)
    if task_name == DATASET_TASK:
        return load_dataset_task(dataset, None, job.dataset.obs_keys, job.dataset.cameras)
    task = get_task(task_name)
    return task, load_episodes(task, dataset, job.dataset), {}


def build_datasets(
    task: Task, episodes: Episodes, policy_cfg: PolicyConfig, data: DataConfig
) -> tuple[WindowDataset, WindowDataset | None]:
    """Training and validation windows from a seeded split by episode."""
    train_idx, val_idx = split_episodes(
        episodes.n_episodes, data.val_fraction, data.split_seed, data.max_train_episodes
    )

    def windows(idx: np.ndarray) -> WindowDataset:
        part = episodes.select(idx)
        obs, act = task.dataset_obs(part), task.dataset_actions(part)
        images = task.dataset_images(part) if task.image_shapes and task.dataset_images else {}
        return WindowDataset(obs, act, part.episode_ends, policy_cfg.n_obs_steps, policy_cfg.horizon, images)

    return windows(train_idx), (windows(val_idx) if len(val_idx) else None)


def make_policy(task: Task, cfg: PolicyConfig, train_data: WindowDataset, seed: int) -> ChunkPolicy:
    """A fresh policy sized for the task, with normalisation statistics from the training data."""
    if train_data.obs.shape[1] != task.obs_dim or train_data.actions.shape[1] != task.action_dim:
        raise ScorePolicyError(
            f"data has observations of size {train_data.obs.shape[1]} and actions of size "
            f"{train_data.actions.shape[1]}; task '{task.name}' expects {task.obs_dim} and {task.action_dim}"
        )
    cfg.obs_dim, cfg.action_dim = task.obs_dim, task.action_dim
    cfg.image_shapes = dict(task.image_shapes)
    missing = sorted(set(task.image_shapes) - set(train_data.images))
    if missing:
        raise ScorePolicyError(f"task '{task.name}': the data has no frames of camera '{missing[0]}'")
    if task.goal_spec is not None and not cfg.goal.enabled:
        cfg.goal.n_tasks, cfg.goal.goal_dim = task.goal_spec
        cfg.goal.from_observation = True
    if cfg.goal.enabled and not cfg.goal.from_observation:
        raise ScorePolicyError(
            f"task '{task.name}': its data carries no goals, but the policy is goal-conditioned "
            "(policy.goal.n_tasks / goal_dim > 0); drop those settings or use a task with goals"
        )
    torch.manual_seed(seed)
    policy = build_policy(cfg)
    n_goal = cfg.goal.obs_width
    stats = {
        "obs": min_max_stats(train_data.obs[:, : task.obs_dim - n_goal]),
        "action": min_max_stats(train_data.actions),
    }
    if cfg.goal.goal_dim > 0:
        stats["goal"] = min_max_stats(train_data.obs[:, task.obs_dim - cfg.goal.goal_dim :])
    policy.set_normalization(stats)
    if policy.image_encoder is not None and cfg.vision.standardize:
        policy.image_encoder.set_statistics({k: torch.from_numpy(v) for k, v in train_data.images.items()})
    return policy


def run_training(job: TrainJob) -> TrainResult:
    """Load data, build the policy and train it into job.out (or resume it).

    With job.train.ranks = N > 1 outside torchrun, N data-parallel ranks are started on this machine
    (torchrun's environment contract) and rank 0's result is returned; under torchrun every rank calls this.
    """
    if not job.resume and (job.out / "train_state.safetensors").exists():
        raise ScorePolicyError(
            f"{job.out}: already holds a run; pass --resume to continue it or choose another --out"
        )
    if job.train.ranks > 1 and not env_ranks().active:
        try:
            result: TrainResult = launch_ranks(run_training, (job,), job.train.ranks)
        except KeyboardInterrupt as e:
            raise TrainingInterrupted(str(e)) from None
        return result
    dataset = open_dataset(job.data, job.dataset.format) if job.data is not None else None
    task_name = job.task or detect_task(dataset)
    task, episodes, data_record = load_task_data(task_name, job, dataset)
    train_data, val_data = build_datasets(task, episodes, job.policy, job.dataset)
    policy = make_policy(task, job.policy, train_data, job.train.seed)
    run_config = {
        "task": task_name,
        "data": str(job.data) if job.data else None,
        **data_record,
        "dataset": to_dict(job.dataset),
        "policy": to_dict(job.policy),
        "n_train_windows": len(train_data),
        "provenance": provenance(task_name),
    }
    return train(
        policy, train_data, job.train, job.out, val_data=val_data, resume=job.resume, run_config=run_config
    )
