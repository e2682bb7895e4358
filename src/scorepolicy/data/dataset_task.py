"""Training on a dataset without a simulator (real-robot LeRobot / robomimic data).

The "dataset" task takes its observation from the data's vector observation features
(`observation.state` first, then every other 1-D `observation.*` feature, or the keys chosen) and its
action from `action`; its sizes come from the data. It has no environment: `scorepolicy eval` says so
and points to offline evaluation (`scorepolicy data offline-eval`).

Cameras ("image features detected"): when the dataset has camera features (LeRobot video or image
features, a replay zarr's image arrays) and every one of them is on disk, the task also carries their
frames (`image_shapes`, `dataset_images`), decoded and resized by `FrameOptions`. A LeRobot dataset whose
videos are absent (such as the shared SO-101 recording) loads state-only as before; the record names the
absent cameras, and asking for them by key gives the reader's one-line message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from scorepolicy.core.episodes import Episodes
from scorepolicy.core.task import StepInfos, Task
from scorepolicy.data.formats import DataFormat, OpenedDataset, open_dataset
from scorepolicy.data.lerobot_video import FrameOptions
from scorepolicy.errors import ScorePolicyError

DATASET_TASK = "dataset"
"""Task name recorded in train_config.json for runs trained on a dataset without a simulator."""
ACTION_KEY = "action"
_ZARR_ALIASES = {"state": "observation.state"}


def _opened(path: Path | OpenedDataset, format: DataFormat | None) -> OpenedDataset:
    return path if isinstance(path, OpenedDataset) else open_dataset(path, format)


def detect_task(path: Path | OpenedDataset | None, format: DataFormat | None = None) -> str:
    """'pusht' for a replay zarr holding `state` (or no data at all), else the simulator-free 'dataset'."""
    if path is None:
        return "pusht"
    dataset = _opened(path, format)
    if dataset.format == "zarr" and (dataset.path / "data" / "state").is_dir():
        return "pusht"
    return DATASET_TASK


def require_valid(path: Path | OpenedDataset, format: DataFormat | None, horizon: int | None) -> None:
    """Validate the dataset at `path`; refuse it with the full report when it has problems."""
    _opened(path, format).require_valid(horizon)


def default_obs_keys(episodes: Episodes) -> list[str]:
    """`observation.state` (or a zarr's `state`) then every other 1-D float observation feature, sorted."""
    vectors = [k for k, v in episodes.data.items() if v.ndim == 2 and v.dtype.kind == "f" and k != ACTION_KEY]
    observations = sorted(k for k in vectors if k.startswith("observation."))
    if not observations:  # a replay zarr: every float vector but the action
        observations = sorted(vectors)
    first = [k for k in ("observation.state", "state") if k in observations]
    return first + [k for k in observations if k not in first]


def resolve_obs_keys(episodes: Episodes, obs_keys: Sequence[str] | None) -> list[str]:
    """The observation keys to train on, checked against the data (robomimic names may omit `observation.`)."""
    keys = list(obs_keys) if obs_keys else default_obs_keys(episodes)
    resolved = []
    for key in keys:
        name = key if key in episodes.data else f"observation.{key}"
        if name not in episodes.data:
            raise ScorePolicyError(
                f"{episodes.source}: observation key '{key}' not in the data; available: {', '.join(episodes.data)}"
            )
        if episodes.data[name].dtype.kind not in "biuf":
            raise ScorePolicyError(f"{episodes.source}: observation key '{key}' is not numeric")
        resolved.append(name)
    if not resolved:
        raise ScorePolicyError(
            f"{episodes.source}: no vector observation feature found; pass --dataset.obs-keys KEY [KEY ...]"
        )
    if ACTION_KEY not in episodes.data:
        raise ScorePolicyError(
            f"{episodes.source}: no '{ACTION_KEY}' feature; a policy needs recorded actions"
        )
    return resolved


def observations(episodes: Episodes, keys: Sequence[str]) -> np.ndarray:
    """The observation vectors (N, d_o) float32: the keys' values flattened and concatenated."""
    n = episodes.n_steps
    return np.concatenate([episodes.data[k].reshape(n, -1) for k in keys], axis=1).astype(np.float32)


def actions(episodes: Episodes) -> np.ndarray:
    """The actions (N, d_a) float32."""
    return episodes.data[ACTION_KEY].reshape(episodes.n_steps, -1).astype(np.float32)


def no_simulator_message(run: str) -> str:
    return (
        f"{run}: trained on a dataset without a simulator (task '{DATASET_TASK}'), so there is nothing to "
        f"roll out; evaluate it offline on held-out episodes: scorepolicy data offline-eval {run}"
    )


def _no_env(render_mode: str | None) -> gym.Env:
    raise ScorePolicyError(no_simulator_message("this run"))


def _no_metrics(infos: StepInfos) -> dict[str, float]:
    raise ScorePolicyError(no_simulator_message("this run"))


def _no_aggregate(records: list[dict[str, Any]]) -> dict[str, float]:
    raise ScorePolicyError(no_simulator_message("this run"))


def camera_frames(episodes: Episodes, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Camera key -> uint8 frames (N, H, W, 3) of recorded episodes."""
    missing = [k for k in keys if k not in episodes.data]
    if missing:
        raise ScorePolicyError(f"{episodes.source}: camera '{missing[0]}' has no frames in the loaded data")
    return {k: episodes.data[k] for k in keys}


def dataset_task(episodes: Episodes, obs_keys: Sequence[str], camera_keys: Sequence[str] = ()) -> Task:
    """A simulator-free task mapping recorded data to (observation, action, camera frames); sizes from
    `episodes`."""
    keys, cameras = list(obs_keys), list(camera_keys)
    obs_dim = observations(episodes.select([0]), keys).shape[1]
    shapes = {
        k: (int(a.shape[1]), int(a.shape[2]), int(a.shape[3]))
        for k, a in camera_frames(episodes, cameras).items()
    }
    return Task(
        name=DATASET_TASK,
        obs_dim=int(obs_dim),
        action_dim=int(actions(episodes.select([0])).shape[1]),
        max_steps=int(np.diff(np.concatenate([[0], episodes.episode_ends])).max()),
        default_seed=0,
        make_env=_no_env,
        dataset_obs=lambda part: observations(part, keys),
        dataset_actions=actions,
        episode_metrics=_no_metrics,
        aggregate_metrics=_no_aggregate,
        image_shapes=shapes,
        dataset_images=(lambda part: camera_frames(part, cameras)) if cameras else None,
    )


def _zarr_aliases(episodes: Episodes) -> Episodes:
    """Replay-zarr keys under their LeRobot names (state -> observation.state), leaving others as they are."""
    data = {_ZARR_ALIASES.get(k, k): v for k, v in episodes.data.items()}
    return Episodes(
        data=data, episode_ends=episodes.episode_ends, source=episodes.source, attrs=episodes.attrs
    )


def dataset_cameras(dataset: OpenedDataset) -> tuple[list[str], list[str]]:
    """(camera keys whose frames are on disk, declared camera keys whose files are absent)."""
    if dataset.format == "lerobot":
        from scorepolicy.data.lerobot import read_lerobot_meta

        meta = read_lerobot_meta(dataset.path)
        absent = sorted(meta.missing_videos())
        return [k for k in meta.camera_keys if k not in absent], absent
    if dataset.format == "zarr":
        from scorepolicy.data.zarr_replay import is_image_array

        arrays = sorted(p.name for p in (dataset.path / "data").iterdir() if p.is_dir())
        return [k for k in arrays if is_image_array(dataset.path, k)], []
    return [], []


def load_dataset_task(
    path: Path | OpenedDataset | None,
    format: DataFormat | None,
    obs_keys: Sequence[str] | None,
    cameras: FrameOptions | None = None,
) -> tuple[Task, Episodes, dict[str, Any]]:
    """The dataset task, its episodes, and what to record in train_config.json about them. With `cameras`
    (enabled), a dataset whose camera features are all on disk gives a task with images."""
    if path is None:
        raise ScorePolicyError(
            f"task '{DATASET_TASK}' needs --data PATH (a LeRobot, robomimic or zarr dataset)"
        )
    dataset = _opened(path, format)
    present, absent = dataset_cameras(dataset) if cameras is not None and cameras.enabled else ([], [])
    use = bool(present) and not absent
    episodes = dataset.load(images=use, frames=cameras if use else None)
    if dataset.format == "zarr":
        episodes = _zarr_aliases(episodes)
    keys = resolve_obs_keys(episodes, obs_keys)
    camera_keys = present if use else []
    record: dict[str, Any] = {"data_format": dataset.format, "obs_keys": keys, "action_key": ACTION_KEY}
    if camera_keys or absent:
        record["camera_keys"] = camera_keys
        record["absent_camera_keys"] = absent
    return dataset_task(episodes, keys, camera_keys), episodes, record
