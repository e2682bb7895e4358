"""Exported graphs: a run's whole action chunk at a fixed NFE as one ONNX graph, and a policy that runs it
with onnxruntime behind the same acting interface as a torch policy (`OnnxPolicy`)."""

from scorepolicy.export.graph import METADATA_KEYS, ONNX_FORMAT, ExportResult, export_onnx, read_metadata

__all__ = ["METADATA_KEYS", "ONNX_FORMAT", "ExportResult", "export_onnx", "read_metadata"]
