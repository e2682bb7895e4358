"""`scorepolicy export`: a run's whole action chunk at a fixed NFE as one ONNX graph."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from scorepolicy.commands.outputs import check_output_file
from scorepolicy.diffusion.samplers import SamplerName
from scorepolicy.errors import ScorePolicyError, check_field


@dataclass
class Export:
    """Export a run as one ONNX graph per NFE (condition, every sampler step, unnormalisation; the initial
    noise is an input) to run with onnxruntime: `scorepolicy eval/latency OUT.onnx` accept the file."""

    run: tyro.conf.Positional[Path]
    """Run directory written by `scorepolicy train` (a score policy)."""
    out: Path
    """The .onnx file to write."""
    format: Literal["onnx"] = "onnx"
    """Export format."""
    nfe: int = 3
    """Denoiser evaluations per chunk the graph runs (fixed in the graph)."""
    sampler: SamplerName | None = None
    """Sampler (default: the run's); deterministic ones only: ddim, euler, heun, dpmpp_2m."""
    overwrite: bool = False
    """Replace an existing --out file."""

    def __post_init__(self) -> None:
        check_field("--nfe", self.nfe, at_least=1)
        if self.out.suffix.lower() != ".onnx":
            raise ScorePolicyError(f"--out {self.out}: give a path ending in .onnx")


def run_export(cmd: Export) -> str:
    """Export the run; the summary line to print."""
    from scorepolicy.export import export_onnx

    check_output_file(cmd.out, "--out", overwrite=cmd.overwrite)  # never one of a run's own files
    result = export_onnx(cmd.run, cmd.nfe, cmd.out, sampler=cmd.sampler)
    meta = result.metadata
    return (
        f"exported {cmd.run} ({meta['sampler']}, NFE {meta['nfe']}, inputs {', '.join(meta['inputs'])}; "
        f"ONNX opset {meta['opset']}) -> {result.path}"
    )
