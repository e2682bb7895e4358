"""Read robomimic HDF5 datasets (`data/demo_*/obs/*`, `actions`, `rewards`, `dones`) into `Episodes`.

Observations become `observation.<key>` float32 (N, d) arrays (LeRobot naming, so conversion and the
dataset task treat every format alike); actions become `action`, rewards `next.reward`, dones
`next.done`. Only numeric HDF5 datasets are read: nothing is unpickled or evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scorepolicy.core.episodes import Episodes
from scorepolicy.errors import ScorePolicyError

H5PY_HINT = "reading robomimic HDF5 needs h5py: pip install 'scorepolicy[robomimic]' (or pip install h5py)"
HDF5_SUFFIXES = (".hdf5", ".h5", ".he5")


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise ScorePolicyError(H5PY_HINT) from exc
    return h5py


def is_hdf5_file(path: Path) -> bool:
    """True for a file with an HDF5 suffix or signature."""
    if not path.is_file():
        return False
    if path.suffix.lower() in HDF5_SUFFIXES:
        return True
    with path.open("rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def _demo_names(data: Any, path: Path) -> list[str]:
    """demo_* groups ordered by their number (demo_2 before demo_10)."""
    names = [n for n in data if re.fullmatch(r"demo_\d+", n)]
    if not names:
        raise ScorePolicyError(f"{path}: group 'data' holds no demo_<n> groups; is this a robomimic dataset?")
    return sorted(names, key=lambda n: int(n.split("_")[1]))


def low_dim_obs_keys(path: str | Path) -> list[str]:
    """The obs keys of the first demo whose datasets are (T, d) or (T,) numbers (no images)."""
    root = Path(path)
    h5py = _h5py()
    with _open(root, h5py) as f:
        data = _group(f, "data", root)
        obs = _group(data[_demo_names(data, root)[0]], "obs", root)
        return sorted(k for k in obs if _is_numeric(obs[k], h5py) and obs[k].ndim <= 2)


def _open(path: Path, h5py: Any) -> Any:
    if not path.is_file():
        raise ScorePolicyError(f"{path}: robomimic HDF5 file not found; check the path")
    try:
        return h5py.File(str(path), "r")
    except Exception as exc:  # OSError for truncated or non-HDF5 files
        raise ScorePolicyError(f"{path}: not a readable HDF5 file ({exc}); restore it") from exc


def _group(parent: Any, name: str, path: Path) -> Any:
    if name not in parent or not hasattr(parent[name], "keys"):
        raise ScorePolicyError(
            f"{path}: group '{parent.name.rstrip('/')}/{name}' missing; is this a robomimic file?"
        )
    return parent[name]


def _is_numeric(node: Any, h5py: Any) -> bool:
    return isinstance(node, h5py.Dataset) and node.dtype.kind in "biuf"


def _read(group: Any, name: str, where: str, h5py: Any) -> np.ndarray:
    """A numeric dataset as (T, ...) numpy, with one-line errors."""
    if name not in group:
        raise ScorePolicyError(f"{where}/{name}: missing; every demo needs it")
    node = group[name]
    if not _is_numeric(node, h5py) or node.ndim == 0:
        raise ScorePolicyError(f"{where}/{name}: expected a numeric (T, ...) array, got {node}")
    try:
        arr = np.asarray(node[()])
    except Exception as exc:
        raise ScorePolicyError(f"{where}/{name}: unreadable ({exc}); the file may be truncated") from exc
    return arr.astype(np.float32, copy=False) if arr.dtype.kind == "f" else arr


def _read_demo(demo: Any, obs_keys: Sequence[str], where: str, h5py: Any) -> dict[str, np.ndarray]:
    obs = demo.get("obs")
    if obs is None or not hasattr(obs, "keys"):
        raise ScorePolicyError(f"{where}/obs: missing; every demo needs an obs group")
    out = {f"observation.{k}": _read(obs, k, f"{where}/obs", h5py) for k in obs_keys}
    out["action"] = _read(demo, "actions", where, h5py)
    for name, key in (("rewards", "next.reward"), ("dones", "next.done")):
        if name in demo:
            out[key] = _read(demo, name, where, h5py)
    lengths = {k: len(v) for k, v in out.items()}
    if len(set(lengths.values())) != 1:
        k_bad = next(k for k, n in lengths.items() if n != lengths["action"])
        raise ScorePolicyError(
            f"{where}: '{k_bad}' has {lengths[k_bad]} steps but actions have {lengths['action']}; "
            "every array of a demo needs one row per step"
        )
    if lengths["action"] == 0:
        raise ScorePolicyError(f"{where}: empty demo (0 steps); drop it")
    return {k: (v[:, None] if v.ndim == 1 and k.startswith("observation.") else v) for k, v in out.items()}


def read_robomimic(path: str | Path, obs_keys: Sequence[str] | None = None) -> Episodes:
    """Read a robomimic HDF5 file; `obs_keys` picks the low-dim observations (default: all of them)."""
    root = Path(path).expanduser()
    keys = list(obs_keys) if obs_keys is not None else low_dim_obs_keys(root)
    h5py = _h5py()
    parts: list[dict[str, np.ndarray]] = []
    with _open(root, h5py) as f:
        data = _group(f, "data", root)
        names = _demo_names(data, root)
        for name in names:
            parts.append(_read_demo(data[name], keys, f"{root}: data/{name}", h5py))
        env_args = data.attrs.get("env_args")
    columns = {}
    for key in parts[0]:
        try:
            columns[key] = np.concatenate([p[key] for p in parts])
        except (KeyError, ValueError) as exc:
            raise ScorePolicyError(
                f"{root}: '{key}' is missing or differs in shape between demos ({exc})"
            ) from exc
    ends = np.cumsum([len(p["action"]) for p in parts])
    attrs: dict[str, object] = {"format": "robomimic", "demos": names, "obs_keys": keys}
    if isinstance(env_args, str | bytes):
        attrs["env_args"] = env_args.decode() if isinstance(env_args, bytes) else env_args
    return Episodes(data=columns, episode_ends=ends, source=str(root), attrs=attrs)
