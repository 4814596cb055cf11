"""edgeformer.export: PyTorch checkpoint -> ONNX bundle with fused attention, behind a parity gate."""

from .bundle import ExportResult, bundle_parity, export_bundle
from .onnx import ExportError
from .parity import ParityFailure, ParityReport, check_parity
from .kinds import export_onnx

__all__ = ["ExportError", "ExportResult", "ParityFailure", "ParityReport", "bundle_parity", "check_parity",
           "export_bundle", "export_onnx"]
