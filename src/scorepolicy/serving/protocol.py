"""The messages of the policy protocol: what a request may hold, how it is checked, the metadata frame.

Requests (client → server), each a msgpack map with a `type` and an optional `id` echoed in the reply:
- `auth`: `token` (only as the first message, when the token is not in an Authorization header)
- `reset`: optional `seed` (int) and `goal` ({task: int, goal: array}) — starts a new episode
- `select_action`: `obs` — one action for one observation (the session keeps the history and the queue);
  a policy with cameras takes the map {OBS_KEY: state, camera key: uint8 frames (H, W, 3)}
- `predict_chunk`: `obs` as a history (n_obs_steps, obs_dim) and optional initial `noise` (horizon,
  action_dim) — the whole action chunk, without touching the session's history or queue
- `ping`

Replies carry `server_ms` (receipt to reply, on the server) and, where the policy ran, `infer_ms`. An
error reply is `{type: "error", field, message}`; it never holds a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scorepolicy.serving.wire import WireError

PROTOCOL_VERSION = 1
OBS_KEY = "observation.state"
"""The one observation key: the policy's input vector (what `ChunkPolicy.select_action` takes)."""
FIELDS: dict[str, frozenset[str]] = {
    "auth": frozenset({"token"}),
    "reset": frozenset({"seed", "goal"}),
    "select_action": frozenset({"obs"}),
    "predict_chunk": frozenset({"obs", "noise"}),
    "ping": frozenset(),
}
"""Message types and the fields each may carry besides `type` and `id`."""
MAX_ID_CHARS = 64


@dataclass(frozen=True)
class Spec:
    """What the served policy accepts: sizes of observations, actions, chunks and goals."""

    obs_dim: int
    """Size of the observation vector."""
    action_dim: int
    """Size of one action."""
    n_obs_steps: int
    """Observations the policy conditions on (the history length)."""
    horizon: int
    """Actions per predicted chunk."""
    n_action_steps: int
    """Actions of a chunk executed before re-planning."""
    n_tasks: int = 0
    """Task ids of a goal-conditioned policy (0: none)."""
    goal_dim: int = 0
    """Size of a goal vector (0: none)."""
    max_batch: int = 64
    """Most observations in one request."""
    image_shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """Camera key -> (height, width, 3) of the uint8 frames each observation carries (empty: none)."""


@dataclass
class Request:
    """A checked request."""

    type: str
    """One of FIELDS."""
    obs: np.ndarray | dict[str, np.ndarray] | None = None
    """Observations, float32: (obs_dim,) or (B, obs_dim); histories for predict_chunk. With cameras: a dict
    {"state": those, camera key: uint8 frames (..., H, W, 3)} (what `ChunkPolicy.select_action` takes)."""
    noise: np.ndarray | None = None
    """Initial noise of predict_chunk, float32 (horizon, action_dim) or (B, horizon, action_dim)."""
    seed: int | None = None
    """Seed of reset."""
    goal: dict[str, Any] | None = None
    """Goal of reset: {'task': np.ndarray (1,), 'goal': np.ndarray (1, goal_dim)}."""
    token: str | None = None
    """Token of auth."""


def message_id(msg: dict[str, Any]) -> int | str | None:
    """The request's `id` (an int or a short string), or None; WireError naming 'id' when malformed."""
    value = msg.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise WireError("id", "must be an integer or a string")
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise WireError("id", f"must be at most {MAX_ID_CHARS} characters")
    return value


def parse_request(msg: dict[str, Any], spec: Spec) -> Request:
    """A checked Request from a decoded message; WireError naming the first bad field."""
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise WireError("type", f"missing or not a string; one of {', '.join(FIELDS)}")
    if kind not in FIELDS:
        raise WireError("type", f"unknown message type {kind[:40]!r}; one of {', '.join(FIELDS)}")
    for key in msg:
        if key not in FIELDS[kind] and key not in ("type", "id"):
            allowed = ", ".join(sorted(FIELDS[kind])) or "no fields"
            raise WireError(key[:60], f"unknown field of '{kind}' (it takes {allowed})")
    req = Request(kind)
    if kind == "auth":
        if not isinstance(msg.get("token"), str):
            raise WireError("token", "must be a string")
        req.token = msg["token"]
    elif kind == "reset":
        req.seed = check_seed(msg.get("seed"))
        req.goal = check_goal(msg.get("goal"), spec)
    elif kind == "select_action":
        req.obs = check_obs(msg.get("obs"), spec, (spec.obs_dim,))
    elif kind == "predict_chunk":
        req.obs = check_obs(msg.get("obs"), spec, (spec.n_obs_steps, spec.obs_dim))
        if msg.get("noise") is not None:
            state = req.obs["state"] if isinstance(req.obs, dict) else req.obs
            batch = state.shape[0] if state.ndim == 3 else None
            req.noise = check_noise(msg["noise"], spec, batch)
    return req


def check_seed(value: Any) -> int | None:
    """A reset seed: None or an integer in [0, 2**63)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise WireError("seed", "must be an integer in [0, 2**63) or absent")
    return value


def check_goal(value: Any, spec: Spec) -> dict[str, Any] | None:
    """A reset goal {task, goal} checked against the policy's goal sizes."""
    if value is None:
        return None
    if spec.n_tasks == 0 and spec.goal_dim == 0:
        raise WireError("goal", "this policy is not goal-conditioned; send reset without a goal")
    if not isinstance(value, dict) or set(value) - {"task", "goal"}:
        raise WireError("goal", "must be a map with 'task' (int) and/or 'goal' (array)")
    goal: dict[str, Any] = {}
    task = value.get("task")
    if spec.n_tasks > 0:
        if isinstance(task, bool) or not isinstance(task, int) or not 0 <= task < spec.n_tasks:
            raise WireError("goal.task", f"must be a task id in 0..{spec.n_tasks - 1}")
        goal["task"] = np.array([task])
    if spec.goal_dim > 0:
        goal["goal"] = numeric(value.get("goal"), "goal.goal", (spec.goal_dim,))[None]
    return goal


def check_obs(value: Any, spec: Spec, tail: tuple[int, ...]) -> np.ndarray | dict[str, np.ndarray]:
    """Observations as float32 of shape `tail` or (B, *tail) from an array or {OBS_KEY: array}; with
    cameras, see `check_camera_obs`."""
    if spec.image_shapes:
        return check_camera_obs(value, spec, tail)
    name = "obs"
    if isinstance(value, dict):
        for key in value:
            if key != OBS_KEY:
                raise WireError(f"obs.{key[:60]}", f"unknown observation key; this policy takes '{OBS_KEY}'")
        if OBS_KEY not in value:
            raise WireError(f"obs.{OBS_KEY}", "missing")
        name, value = f"obs.{OBS_KEY}", value[OBS_KEY]
    elif not isinstance(value, np.ndarray):
        raise WireError("obs", f"must be a map {{'{OBS_KEY}': array}} or an array")
    return numeric(value, name, tail, spec.max_batch)


def check_noise(value: Any, spec: Spec, batch: int | None) -> np.ndarray:
    """Initial noise of shape (horizon, action_dim), or (B, ...) for a batch of B histories."""
    tail = (spec.horizon, spec.action_dim)
    return numeric(value, "noise", tail if batch is None else (batch, *tail))


def numeric(value: Any, name: str, tail: tuple[int, ...], max_batch: int = 0) -> np.ndarray:
    """A finite float32 array from a numeric (integer or floating) array of shape `tail`, or (B, *tail)
    with 1 ≤ B ≤ max_batch."""
    if not isinstance(value, np.ndarray):
        raise WireError(name, "must be an array")
    if value.dtype.kind not in "iuf":
        raise WireError(name, f"dtype {value.dtype.name} is not accepted; send floating-point numbers")
    shape = tuple(value.shape)
    batched = len(shape) == len(tail) + 1 and shape[1:] == tail and 1 <= shape[0] <= max_batch
    if shape != tail and not batched:
        also = f" or (batch ≤ {max_batch}, {', '.join(map(str, tail))})" if max_batch else ""
        raise WireError(name, f"expected shape {tail}{also}, got {shape}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
        out = value.astype(np.float32)
    if not np.isfinite(out).all():
        raise WireError(name, "contains NaN or inf (or values beyond float32); check the sensor")
    return out


def check_camera_obs(value: Any, spec: Spec, tail: tuple[int, ...]) -> dict[str, np.ndarray]:
    """{"state": float32 (B?, *tail), camera: uint8 (B?, *tail[:-1], H, W, 3)} from the map {OBS_KEY: array,
    camera key: uint8 array}: every camera of the spec, no other key, frames of the spec's shape."""
    keys = [OBS_KEY, *sorted(spec.image_shapes)]
    if not isinstance(value, dict):
        raise WireError("obs", f"this policy takes camera frames: send a map with keys {', '.join(keys)}")
    for key in value:
        if key not in keys:
            raise WireError(
                f"obs.{key[:60]}", f"unknown observation key; this policy takes {', '.join(keys)}"
            )
    for key in keys:
        if key not in value:
            raise WireError(f"obs.{key}", "missing")
    state = numeric(value[OBS_KEY], f"obs.{OBS_KEY}", tail, spec.max_batch)
    lead = state.shape[: state.ndim - 1]
    out = {"state": state}
    for key in keys[1:]:
        frames, expected = value[key], (*lead, *spec.image_shapes[key])
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or tuple(frames.shape) != expected:
            got = (
                f"{frames.dtype.name} {tuple(frames.shape)}" if isinstance(frames, np.ndarray) else "no array"
            )
            raise WireError(f"obs.{key}", f"expected uint8 frames of shape {expected}, got {got}")
        out[key] = frames
    return out
