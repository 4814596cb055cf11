"""edgeformer.debug: the first node where a bundle's numbers leave its reference, and the PyTorch module it came from.

Torch-free (onnx, onnxruntime, numpy, the runtime): the PyTorch reference lives in
edgeformer.export.debug, the quantized-vs-float32 entry point in edgeformer.quantize.debug; both
hand their reference tensors to this core:

- graph: the graph indexed in topological order (producers, consumers, module boundaries, regions)
- scopes: each node's PyTorch module, from the exporter's metadata, the float32 graph, or its neighbours
- probe: one ONNX Runtime run per batch with the intermediate tensors exposed
- compare: tensor errors against the reference, and the budget that says when a node is over
- search: the walk in graph order to the first node over the budget, the layer curve, compare_graphs
- report: the report's records and its one-line summary
- plot: the error curve as a picture
"""

from .compare import FLOAT32_ATOL, QUANT_JUMP, QUANT_REL, Budget
from .graph import DebugError, GraphIndex, load_graph
from .plot import check_plot_path, plot_error_curve
from .report import DebugReport, Finding, LayerRow, NodeRow, first_divergence_line
from .scopes import metadata_scope
from .search import compare_graphs

__all__ = ["Budget", "DebugError", "DebugReport", "FLOAT32_ATOL", "Finding", "GraphIndex", "LayerRow", "NodeRow",
           "QUANT_JUMP", "QUANT_REL", "check_plot_path", "compare_graphs", "first_divergence_line", "load_graph",
           "metadata_scope", "plot_error_curve"]
