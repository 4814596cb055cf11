"""edgeformer.debug: the first node where a bundle's numbers leave its reference, and the PyTorch module it came from.

Torch-free (onnx, onnxruntime, numpy, the runtime): the PyTorch reference lives in
edgeformer.export.debug, the quantized-vs-float32 entry point in edgeformer.quantize.debug; both
hand their reference tensors to this core.
"""

from .core import (FLOAT32_ATOL, QUANT_JUMP, QUANT_REL, Budget, DebugError, DebugReport, Finding, GraphIndex, LayerRow,
                   NodeRow, compare_graphs, first_divergence_line, load_graph, metadata_scope)
from .plot import check_plot_path, plot_error_curve

__all__ = ["Budget", "DebugError", "DebugReport", "FLOAT32_ATOL", "Finding", "GraphIndex", "LayerRow", "NodeRow",
           "QUANT_JUMP", "QUANT_REL", "check_plot_path", "compare_graphs", "first_divergence_line", "load_graph",
           "metadata_scope", "plot_error_curve"]
