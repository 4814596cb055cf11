"""edgeformer.export: PyTorch checkpoint -> ONNX bundle with fused attention, behind a parity gate."""

from .bundle import ExportResult, bundle_parity, export_bundle
from .onnx import ExportError, export_onnx
from .parity import ParityFailure, ParityReport, check_parity

__all__ = ["ExportError", "ExportResult", "ParityFailure", "ParityReport", "bundle_parity", "check_parity",
           "export_bundle", "export_onnx"]
