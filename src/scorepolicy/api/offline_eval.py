"""Offline evaluation for data without a simulator: action-prediction error on held-out episodes.

The held-out episodes are the run's validation split (its train_config.json: split seed, fraction).
For every step t of those episodes whose next T_a recorded actions lie inside the episode, each policy
samples an action chunk from the observation history and its T_a executed actions are compared with
the recorded ones (per-dimension and mean MSE / MAE). A mean-action baseline (the training split's
mean action) is always in the table; other runs (e.g. an MSE-trained policy of the same size) can be
added and are scored on exactly the same windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scorepolicy.api.runs import load_policy
from scorepolicy.core.episodes import Episodes
from scorepolicy.data.dataset_task import DATASET_TASK, actions, load_dataset_task, observations
from scorepolicy.data.windows import split_episodes, window_indices
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import read_json
from scorepolicy.policies.baselines import denoiser_calls
from scorepolicy.provenance import provenance


def _run_meta(run: Path) -> dict[str, Any]:
    meta = read_json(run / "train_config.json")
    if not isinstance(meta, dict):
        raise ScorePolicyError(f"{run}/train_config.json: expected a JSON object; is this a training run?")
    return meta


def _data_config(meta: dict[str, Any]) -> dict[str, Any]:
    cfg = meta.get("dataset")
    return cfg if isinstance(cfg, dict) else {}


def _observations(meta: dict[str, Any], episodes: Episodes) -> np.ndarray:
    if meta.get("task") == DATASET_TASK:
        return observations(episodes, meta.get("obs_keys") or [])
    from scorepolicy.envs.registry import get_task

    return get_task(str(meta.get("task"))).dataset_obs(episodes)


def _load(meta: dict[str, Any], data: Path | None, run: Path) -> tuple[Episodes, np.ndarray]:
    path = data or (Path(meta["data"]) if meta.get("data") else None)
    if path is None:
        raise ScorePolicyError(f"{run}: the run records no dataset path; pass --data PATH")
    fmt = meta.get("data_format")
    obs_keys = meta.get("obs_keys")
    if meta.get("task") == DATASET_TASK:
        _, episodes, _ = load_dataset_task(path, fmt, obs_keys)
    else:
        from scorepolicy.data.formats import load_dataset

        episodes = load_dataset(path, fmt)
    return episodes, _observations(meta, episodes)


def held_out_windows(
    episodes: Episodes, obs: np.ndarray, val_idx: np.ndarray, n_obs_steps: int, n_action_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Observation histories (M, T_o, d_o) and recorded executed actions (M, T_a, d_a) of held-out steps."""
    part = episodes.select(val_idx)
    rows = np.concatenate([np.arange(episodes.episode_starts[i], episodes.episode_ends[i]) for i in val_idx])
    obs_part, act_part = obs[rows], actions(part)
    obs_idx, act_idx = window_indices(part.episode_ends, n_obs_steps, n_action_steps)
    ends = np.repeat(part.episode_ends, np.diff(np.concatenate([[0], part.episode_ends])))
    inside = np.arange(part.n_steps) + n_action_steps <= ends
    return obs_part[obs_idx[inside]], act_part[act_idx[inside]]


def _predict(run: Path, obs: np.ndarray, seed: int, nfe: int | None) -> tuple[np.ndarray, dict[str, Any]]:
    policy = load_policy(run, nfe=nfe)
    policy.reset(seed=seed)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(obs), 512):
            batch = torch.as_tensor(obs[start : start + 512], dtype=torch.float32)
            chunks.append(policy.predict_action_chunk(batch).numpy())
    cfg = policy.cfg
    info = {"kind": cfg.kind, "denoiser": cfg.denoiser, "nfe": denoiser_calls(policy)}
    info["parameters"] = sum(p.numel() for p in policy.parameters())
    return np.concatenate(chunks), info


def _errors(pred: np.ndarray, target: np.ndarray, scale: np.ndarray) -> dict[str, Any]:
    diff = (pred - target).reshape(-1, target.shape[-1]).astype(np.float64)
    mse, mae = (diff**2).mean(axis=0), np.abs(diff).mean(axis=0)
    return {
        "mse": float(mse.mean()),
        "mae": float(mae.mean()),
        "nmse": float((mse / scale).mean()),
        "mse_per_dim": mse.tolist(),
        "mae_per_dim": mae.tolist(),
    }


def offline_evaluate(
    run: Path,
    data: Path | None = None,
    *,
    baselines: Sequence[Path] = (),
    seed: int = 0,
    nfe: int | None = None,
) -> dict[str, Any]:
    """Score `run` (and each baseline run) against recorded actions of the run's held-out episodes."""
    run = Path(run)
    meta = _run_meta(run)
    episodes, obs = _load(meta, data, run)
    split = _data_config(meta)
    train_idx, val_idx = split_episodes(
        episodes.n_episodes,
        float(split.get("val_fraction", 0.02)),
        int(split.get("split_seed", 42)),
        split.get("max_train_episodes"),
    )
    if not len(val_idx):
        raise ScorePolicyError(
            f"{run}: the run held out no episodes (val_fraction 0); retrain with a validation split"
        )
    policy_cfg = read_json(run / "config.json").get("policy", {})
    t_o, t_a = int(policy_cfg.get("n_obs_steps", 2)), int(policy_cfg.get("n_action_steps", 8))
    hist, target = held_out_windows(episodes, obs, val_idx, t_o, t_a)
    if not len(hist):
        raise ScorePolicyError(f"{run}: held-out episodes are shorter than {t_a} steps; nothing to score")
    train_actions = actions(episodes.select(train_idx))
    scale = np.maximum(train_actions.astype(np.float64).var(axis=0), 1e-12)
    mean_action = np.broadcast_to(train_actions.mean(axis=0), target.shape)
    rows = [{"name": "mean action", "kind": "mean-action", **_errors(mean_action, target, scale)}]
    for i, other in enumerate([run, *baselines]):
        other_cfg = read_json(Path(other) / "config.json").get("policy", {})
        if (other_cfg.get("n_obs_steps"), other_cfg.get("obs_dim")) != (t_o, obs.shape[1]):
            raise ScorePolicyError(
                f"{other}: observation history or size differs from {run}; train it on the same data"
            )
        pred, info = _predict(Path(other), hist, seed, nfe if i == 0 else None)
        rows.append({"name": str(other), **info, **_errors(pred[:, :t_a], target, scale)})
    return {
        "run": str(run),
        "data": str(data or meta.get("data")),
        "held_out_episodes": val_idx.tolist(),
        "n_windows": len(hist),
        "n_action_steps": t_a,
        "seed": seed,
        "provenance": provenance(meta.get("task") if meta.get("task") != DATASET_TASK else None),
        "rows": rows,
    }


def format_offline(result: dict[str, Any]) -> str:
    """A text table: one row per predictor, mean MSE / MAE / normalised MSE and per-dimension MSE."""
    lines = [
        f"held-out episodes {result['held_out_episodes']}: {result['n_windows']} windows, "
        f"first {result['n_action_steps']} actions of each chunk vs recorded",
        f"{'predictor':<40} {'kind':<12} {'MSE':>10} {'MAE':>9} {'nMSE':>7}  MSE per dim",
    ]
    for row in result["rows"]:
        dims = " ".join(f"{v:.3g}" for v in row["mse_per_dim"])
        lines.append(
            f"{row['name'][-40:]:<40} {row['kind']:<12} {row['mse']:>10.4g} {row['mae']:>9.4g} {row['nmse']:>7.3f}  {dims}"
        )
    return "\n".join(lines)
