"""Dataset inspection: a summary (episodes, frames, fps, features, tasks, stats) and a trajectory plot."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from scorepolicy.core.episodes import Episodes
from scorepolicy.data.formats import DataFormat, OpenedDataset, open_dataset
from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import atomic_write_bytes


def _feature_summary(arr: np.ndarray) -> dict[str, Any]:
    flat = arr.reshape(len(arr), -1).astype(np.float64)
    finite = np.isfinite(flat).all(axis=1)
    ok = flat[finite] if finite.any() else np.zeros((1, flat.shape[1]))
    return {
        "dtype": str(arr.dtype),
        "shape": list(arr.shape[1:]),
        "min": ok.min(0).tolist(),
        "max": ok.max(0).tolist(),
        "mean": ok.mean(0).tolist(),
        "std": ok.std(0).tolist(),
        "nonfinite_frames": int((~finite).sum()),
    }


def dataset_info(path: str | Path, format: DataFormat | None = None) -> dict[str, Any]:
    """Episodes, frames, fps, features with statistics, tasks and absent streams of a dataset."""
    return open_dataset(path, format).info()


def summarise(dataset: OpenedDataset) -> dict[str, Any]:
    """The summary of an opened dataset (its data read once, NaN/inf counted rather than refused)."""
    episodes = dataset.load(finite=False)
    fmt = dataset.format
    lengths = np.diff(np.concatenate([[0], episodes.episode_ends]))
    attrs = episodes.attrs
    return {
        "path": str(dataset.path),
        "format": fmt + (f" {attrs['codebase_version']}" if "codebase_version" in attrs else ""),
        "episodes": episodes.n_episodes,
        "frames": episodes.n_steps,
        "episode_length": {
            "min": int(lengths.min()),
            "mean": float(lengths.mean()),
            "max": int(lengths.max()),
        },
        "fps": attrs.get("fps"),
        "robot_type": attrs.get("robot_type"),
        "tasks": attrs.get("tasks", []),
        "features": {k: _feature_summary(v) for k, v in episodes.data.items() if v.dtype.kind in "biuf"},
        "missing_streams": attrs.get("missing_video_keys", []),
    }


def _vec(values: list[float], limit: int = 8) -> str:
    shown = " ".join(f"{v:.4g}" for v in values[:limit])
    return f"[{shown}{' ...' if len(values) > limit else ''}]"


def format_info(info: dict[str, Any]) -> str:
    """The summary as aligned text lines."""
    ep = info["episode_length"]
    lines = [
        f"{info['path']} ({info['format']})",
        f"episodes {info['episodes']}, frames {info['frames']} (per episode {ep['min']}..{ep['max']}, "
        f"mean {ep['mean']:.1f}), fps {info['fps'] if info['fps'] is not None else 'unknown'}"
        + (f", robot {info['robot_type']}" if info.get("robot_type") else ""),
        f"tasks ({len(info['tasks'])}): " + "; ".join(repr(t) for t in info["tasks"][:10]),
        "features:",
    ]
    width = max((len(k) for k in info["features"]), default=10)
    for key, f in info["features"].items():
        bad = f"  NaN/inf in {f['nonfinite_frames']} frames" if f["nonfinite_frames"] else ""
        lines.append(
            f"  {key:<{width}} {f['dtype']:<8} {f['shape']!s:<8} min {_vec(f['min'])} max {_vec(f['max'])} "
            f"mean {_vec(f['mean'])}{bad}"
        )
    if info["missing_streams"]:
        lines.append(
            "video streams declared but absent (everything else loads; ask for them only once restored): "
            + ", ".join(info["missing_streams"])
        )
    return "\n".join(lines)


def _pick(episodes: Episodes, *names: str) -> tuple[str, np.ndarray] | None:
    for name in names:
        if name in episodes.data and episodes.data[name].dtype.kind == "f":
            arr = episodes.data[name]
            return name, arr.reshape(len(arr), -1)
    return None


def plot_dataset(
    path: str | Path,
    out: Path,
    format: DataFormat | None = None,
    *,
    max_episodes: int = 20,
    overwrite: bool = False,
) -> Path:
    """A PNG: action and state trajectories of the first episodes, and a histogram per action dimension."""
    if out.exists() and not overwrite:
        raise ScorePolicyError(f"{out}: already exists; choose another --out or pass --overwrite")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    episodes = open_dataset(path, format).load(finite=False)
    action = _pick(episodes, "action")
    state = _pick(episodes, "observation.state", "state")
    if action is None:
        raise ScorePolicyError(f"{path}: no float 'action' feature to plot")
    d = action[1].shape[1]
    fig, axes = plt.subplots(3, d, figsize=(2.6 * d, 7), squeeze=False)
    for i in range(min(max_episodes, episodes.n_episodes)):
        part = episodes.episode_slice(i)
        for j in range(d):
            axes[0, j].plot(action[1][part, j], lw=0.8)
            if state is not None and j < state[1].shape[1]:
                axes[1, j].plot(state[1][part, j], lw=0.8)
    for j in range(d):
        axes[0, j].set_title(f"{action[0]}[{j}]", fontsize=8)
        axes[1, j].set_title(f"{state[0]}[{j}]" if state and j < state[1].shape[1] else "", fontsize=8)
        values = action[1][:, j]
        axes[2, j].hist(values[np.isfinite(values)], bins=40)
        axes[2, j].set_title(f"histogram {action[0]}[{j}]", fontsize=8)
    fig.suptitle(f"{Path(path).name}: {episodes.n_episodes} episodes, {episodes.n_steps} frames", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out
