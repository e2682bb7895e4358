"""Training on a dataset without a simulator (real-robot LeRobot / robomimic data).

The "dataset" task takes its observation from the data's vector observation features
(`observation.state` first, then every other 1-D `observation.*` feature, or the keys chosen) and its
action from `action`; its sizes come from the data. It has no environment: `scorepolicy eval` says so
and points to offline evaluation (`scorepolicy data offline-eval`).
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


def dataset_task(episodes: Episodes, obs_keys: Sequence[str]) -> Task:
    """A simulator-free task mapping recorded data to (observation, action); sizes from `episodes`."""
    keys = list(obs_keys)
    obs_dim = observations(episodes.select([0]), keys).shape[1]
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
    )


def _zarr_aliases(episodes: Episodes) -> Episodes:
    """Replay-zarr keys under their LeRobot names (state -> observation.state), leaving others as they are."""
    data = {_ZARR_ALIASES.get(k, k): v for k, v in episodes.data.items()}
    return Episodes(
        data=data, episode_ends=episodes.episode_ends, source=episodes.source, attrs=episodes.attrs
    )


def load_dataset_task(
    path: Path | OpenedDataset | None, format: DataFormat | None, obs_keys: Sequence[str] | None
) -> tuple[Task, Episodes, dict[str, Any]]:
    """The dataset task, its episodes, and what to record in train_config.json about them."""
    if path is None:
        raise ScorePolicyError(
            f"task '{DATASET_TASK}' needs --data PATH (a LeRobot, robomimic or zarr dataset)"
        )
    dataset = _opened(path, format)
    episodes = dataset.load()
    if dataset.format == "zarr":
        episodes = _zarr_aliases(episodes)
    keys = resolve_obs_keys(episodes, obs_keys)
    record = {"data_format": dataset.format, "obs_keys": keys, "action_key": ACTION_KEY}
    return dataset_task(episodes, keys), episodes, record
