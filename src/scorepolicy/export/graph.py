"""Export a score policy's whole action chunk at a fixed NFE as one ONNX graph.

The graph takes raw observation histories `obs` (batch, n_obs_steps, obs_dim), the standard-normal initial
noise `noise` (batch, horizon, action_dim) and, where the policy needs them outside the observation, task
ids `task` (batch,) int64 and goal vectors `goal` (batch, goal_dim); it returns the raw action chunk
`actions` (batch, horizon, action_dim). Normalisation, conditioning, every step of a deterministic sampler,
classifier-free guidance (λ fixed at export) and unnormalisation are inside; the batch axis is dynamic.
The noise is an input so that a chunk is reproducible (the per-episode noise streams of evaluation) and so
that noise-space RL (DSRL) can steer it. The export uses torch's dynamo-based exporter (`torch.export` +
onnxscript), the path torch 2.13 does not mark deprecated. The model's metadata_props make the file
self-describing (see `METADATA_KEYS`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scorepolicy.errors import ScorePolicyError
from scorepolicy.files import atomic_write_bytes, read_json
from scorepolicy.policies import ChunkPolicy, ScorePolicy, policy_class
from scorepolicy.policies.base import FORMAT as POLICY_FORMAT
from scorepolicy.provenance import package_version, provenance

ONNX_FORMAT = "scorepolicy/onnx-chunk"
"""The `format` metadata value of an exported chunk graph."""
ONNX_FORMAT_VERSION = 1
METADATA_KEYS = (
    "format",
    "format_version",
    "policy",
    "run",
    "run_sha256",
    "task",
    "nfe",
    "sampler",
    "guidance",
    "inputs",
    "obs_shape",
    "action_shape",
    "n_action_steps",
    "normalization",
    "opset",
    "torch_version",
    "provenance",
)
"""metadata_props keys of an exported graph; every value is JSON text. `policy` is the run's config.json
content with the exported sampler and NFE, `run_sha256` the sha256 of the run's model.safetensors."""


@dataclass
class ExportResult:
    """What `export_onnx` wrote."""

    path: Path
    """The .onnx file."""
    metadata: dict[str, Any]
    """The metadata stored in the model (parsed)."""


def export_onnx(
    run_or_policy: str | Path | ChunkPolicy,
    nfe: int,
    out: str | Path,
    sampler: str | None = None,
) -> ExportResult:
    """Write the policy's whole chunk at `nfe` denoiser calls (and `sampler`, default the policy's) as one
    ONNX graph to `out` (atomically); see the module docstring for its inputs and metadata."""
    if nfe < 1:
        raise ScorePolicyError(f"--nfe: must be at least 1, got {nfe}")
    policy, run, task = _export_copy(run_or_policy)
    d = policy.cfg.diffusion
    d.nfe = nfe
    if sampler is not None:
        d.sampler = sampler  # type: ignore[assignment]
    policy_class(policy.cfg.kind).check_config(policy.cfg, "export options")
    module = policy.export_module(nfe)
    inputs = ("obs", "noise", *policy.graph_goal_inputs())
    program = _export_program(module, _example_inputs(policy, inputs), inputs)
    model = program.model_proto
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    meta = _metadata(policy, run, task, inputs, opset)
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    out = Path(out)
    atomic_write_bytes(out, model.SerializeToString())
    return ExportResult(out, meta)


def _export_copy(source: str | Path | ChunkPolicy) -> tuple[ScorePolicy, Path | None, str | None]:
    """A private copy of the policy to export (the caller's object is never changed), the run directory
    and the task the run was trained for (None when not known)."""
    run = None if isinstance(source, ChunkPolicy) else Path(source)
    original = source if isinstance(source, ChunkPolicy) else ChunkPolicy.from_pretrained(source)
    if type(original) is not ScorePolicy:
        raise ScorePolicyError(
            f"{run or 'policy'}: a {type(original).__name__} cannot be exported as one graph; export a score "
            "policy run (for DSRL, export the base run and feed the actor's noise to the graph's noise input)"
        )
    policy = ScorePolicy(copy.deepcopy(original.cfg))
    policy.load_state_dict(original.state_dict())
    task = None
    if run is not None and (run / "train_config.json").is_file():
        meta = read_json(run / "train_config.json")
        task = str(meta["task"]) if isinstance(meta, dict) and meta.get("task") else None
    return policy, run, task


def _example_inputs(policy: ScorePolicy, names: tuple[str, ...]) -> dict[str, Tensor]:
    """Inputs of batch 2 with the graph's dtypes and shapes (their values do not shape the graph)."""
    cfg, batch = policy.cfg, 2
    obs = torch.zeros(batch, cfg.n_obs_steps, cfg.obs_dim)
    obs[..., : policy.obs_min.shape[0]] += (policy.obs_min + policy.obs_max) / 2
    examples = {"obs": obs, "noise": torch.zeros(batch, cfg.horizon, cfg.action_dim)}
    if "task" in names:
        examples["task"] = torch.zeros(batch, dtype=torch.long)
    if "goal" in names:
        buffers = dict(policy.named_buffers())
        mid = (buffers["goal_min"] + buffers["goal_max"]) / 2
        examples["goal"] = mid.expand(batch, -1).clone()
    return examples


def _export_program(module: torch.nn.Module, examples: dict[str, Tensor], names: tuple[str, ...]) -> Any:
    """torch.onnx.export with the dynamo exporter; the batch axis of every input is dynamic."""
    batch = torch.export.Dim.DYNAMIC
    dynamic = {name: {0: batch} for name in examples}
    args = (examples["obs"], examples["noise"])
    kwargs = {k: v for k, v in examples.items() if k not in ("obs", "noise")}
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    try:
        registration.setLevel(logging.ERROR)  # "torchvision is not installed" notices
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's progress notices
            program = torch.onnx.export(
                module,
                args,
                kwargs=kwargs,
                dynamo=True,
                input_names=list(names),
                output_names=["actions"],
                dynamic_shapes=dynamic,
                verbose=False,
            )
    except ImportError as e:
        raise ScorePolicyError(
            f"ONNX export needs onnx and onnxscript ({e}); pip install 'scorepolicy[export]'"
        ) from e
    finally:
        registration.setLevel(level)
    if program is None:
        raise ScorePolicyError("ONNX export produced no program; torch.onnx.export(dynamo=True) failed")
    return program


def _metadata(
    policy: ScorePolicy, run: Path | None, task: str | None, inputs: tuple[str, ...], opset: int
) -> dict[str, Any]:
    """The metadata_props of the exported graph (values before JSON encoding)."""
    cfg = policy.cfg
    stats = {
        name: {"min": getattr(policy, f"{name}_min").tolist(), "max": getattr(policy, f"{name}_max").tolist()}
        for name in policy.normalized_fields()
    }
    return {
        "format": ONNX_FORMAT,
        "format_version": ONNX_FORMAT_VERSION,
        "policy": {"format": POLICY_FORMAT, "version": 1, "policy": cfg.used_dict()},
        "run": None if run is None else str(run),
        "run_sha256": None if run is None else sha256_file(run / "model.safetensors"),
        "task": task,
        "nfe": cfg.diffusion.nfe,
        "sampler": cfg.diffusion.sampler,
        "guidance": cfg.goal.guidance if cfg.goal.enabled else None,
        "inputs": list(inputs),
        "obs_shape": [cfg.n_obs_steps, cfg.obs_dim],
        "action_shape": [cfg.horizon, cfg.action_dim],
        "n_action_steps": cfg.n_action_steps,
        "normalization": stats,
        "opset": opset,
        "torch_version": torch.__version__,
        "provenance": _provenance(task),
    }


def _provenance(task: str | None) -> dict[str, Any]:
    """The usual provenance, with the versions of the ONNX packages that wrote the graph."""
    prov = provenance(task)
    prov["versions"].update({name: package_version(name) for name in ("onnx", "onnxscript")})
    return prov


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an exported chunk graph (parsed JSON values), checked to be scorepolicy's."""
    onnx = require_module("onnx")
    path = Path(path)
    if not path.is_file():
        raise ScorePolicyError(f"{path}: no such file; pass a .onnx file written by 'scorepolicy export'")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ScorePolicyError(f"{path}: not a readable ONNX model ({type(e).__name__})") from e
    meta: dict[str, Any] = {}
    for entry in model.metadata_props:
        try:
            meta[entry.key] = json.loads(entry.value)
        except ValueError:
            meta[entry.key] = entry.value
    if meta.get("format") != ONNX_FORMAT:
        raise ScorePolicyError(
            f"{path}: not a scorepolicy chunk graph (metadata 'format' must be '{ONNX_FORMAT}'); "
            "write one with 'scorepolicy export RUN --format onnx'"
        )
    return meta


def require_module(module: str) -> Any:
    """Import an optional dependency of the export extra, or a one-line error saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ScorePolicyError(f"{module} is not installed; pip install 'scorepolicy[export]'") from e
