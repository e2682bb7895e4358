"""The metadata frame a client receives on connect: shapes, chunk sizes, policy kind, weights hash, limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scorepolicy import __version__
from scorepolicy.files import read_json, sha256_file
from scorepolicy.policies.baselines import denoiser_calls
from scorepolicy.serving.config import ServeConfig
from scorepolicy.serving.protocol import OBS_KEY, PROTOCOL_VERSION, Spec
from scorepolicy.serving.session import acting_policy, is_guarded


def policy_spec(policy: Any, max_batch: int) -> Spec:
    """What a loaded policy accepts (its config's sizes)."""
    cfg = acting_policy(policy).cfg
    return Spec(
        obs_dim=cfg.obs_dim,
        action_dim=cfg.action_dim,
        n_obs_steps=cfg.n_obs_steps,
        horizon=cfg.horizon,
        n_action_steps=cfg.n_action_steps,
        n_tasks=cfg.goal.n_tasks,
        goal_dim=cfg.goal.goal_dim,
        max_batch=max_batch,
        image_shapes=dict(cfg.image_shapes),
    )


def sampler_of(policy: Any) -> str | None:
    """The sampler a policy's chunks come from (None for MSE-BC, which has none)."""
    cfg = policy.cfg
    return {"ddpm": cfg.ddpm.sampler, "mse-bc": None}.get(cfg.kind, cfg.diffusion.sampler)


def weights_hashes(run_dir: Path) -> dict[str, str]:
    """sha256 of the run's model.safetensors (and of base/model.safetensors for an RL-improved run)."""
    out = {}
    for key, path in (
        ("model_sha256", run_dir / "model.safetensors"),
        ("base_sha256", run_dir / "base" / "model.safetensors"),
    ):
        if path.is_file():
            out[key] = sha256_file(path)
    return out


def recorded_task(run_dir: Path) -> str | None:
    """The task named in the run's train_config.json, if any."""
    path = run_dir / "train_config.json"
    meta = read_json(path) if path.is_file() else None
    return str(meta["task"]) if isinstance(meta, dict) and meta.get("task") else None


def build_metadata(policy: Any, run_dir: Path, config: ServeConfig, spec: Spec) -> dict[str, Any]:
    """The metadata frame (without the session id, which the server adds per connection)."""
    guard = None
    if is_guarded(policy):
        keys = ("n_samples", "window", "delta", "style", "rule")
        guard = {key: policy.monitor.settings.get(key) for key in keys}
        policy = policy.policy
    goal = None
    if spec.n_tasks or spec.goal_dim:
        goal = {
            "n_tasks": spec.n_tasks,
            "goal_dim": spec.goal_dim,
            "from_observation": policy.cfg.goal.from_observation,
        }
    return {
        "type": "metadata",
        "protocol": PROTOCOL_VERSION,
        "server": f"scorepolicy {__version__}",
        "run": run_dir.name,
        "task": recorded_task(run_dir),
        "model_sha256": None,
        **weights_hashes(run_dir),
        "policy": {
            "kind": str(getattr(policy, "kind", "") or policy.cfg.kind),
            "denoiser": policy.cfg.denoiser,
            "sampler": sampler_of(policy),
            "nfe": denoiser_calls(policy),
        },
        "observation": {
            OBS_KEY: {"shape": [spec.obs_dim], "dtype": "float32"},
            **{key: {"shape": list(shape), "dtype": "uint8"} for key, shape in spec.image_shapes.items()},
        },
        "action": {"shape": [spec.action_dim], "dtype": "float32"},
        "n_obs_steps": spec.n_obs_steps,
        "horizon": spec.horizon,
        "n_action_steps": spec.n_action_steps,
        "fps": config.fps,
        "goal": goal,
        "limits": {
            "max_message_bytes": config.max_message_bytes,
            "rate": config.rate,
            "burst": config.bucket_size,
            "max_batch": config.max_batch,
            "max_sessions": config.max_sessions,
            "idle_timeout": config.idle_timeout,
        },
        "token_required": config.token is not None,
        "guard": guard,
    }
