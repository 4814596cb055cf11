"""How a bundle's graph file is written: its weights inside it, or beside it in GRAPH.data past a size.

A graph whose weights pass EXTERNAL_DATA_BYTES keeps them in `model.onnx.data` next to
`model.onnx`. onnxruntime then maps that file instead of parsing a protobuf that holds them, so
a session never has the protobuf's copy and its own at once: SmolLM2-135M int4 (116 MB) peaked at
272 MB loading that way against 324 MB from one file (benchmarks/smollm2.py measures
`edgeformer generate`). A protobuf also cannot hold more than 2 GB. Smaller graphs stay one
file, which is what a browser or a phone app most easily ships (the web target writes every graph
as one file).

Writers of graphs (export, quantize, deploy) call `save_graph` or `settle_graph_file`; onnx is
imported here only when they do, so the runtime itself needs numpy and onnxruntime alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

EXTERNAL_DATA_BYTES = 64 << 20


def weights_file(graph_file: str | os.PathLike) -> str:
    """The name of the file beside `graph_file` that holds its weights when they are kept outside it."""
    return f"{Path(graph_file).name}.data"


def keeps_weights_beside(weight_bytes: int) -> bool:
    return weight_bytes > EXTERNAL_DATA_BYTES


def weight_bytes(model: Any) -> int:
    """Bytes of an onnx.ModelProto's initializers, read from their dimensions and element types."""
    from onnx import helper

    total = 0
    for tensor in model.graph.initializer:
        if tensor.raw_data:
            total += len(tensor.raw_data)
            continue
        count = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        total += count * itemsize
    return total


def save_graph(model: Any, path: str | os.PathLike) -> Path:
    """Write an onnx.ModelProto to `path`, its weights beside it past EXTERNAL_DATA_BYTES (a stale weights
    file from an earlier write is removed). Writing beside it moves the tensors' bytes out of `model`."""
    import onnx

    path = Path(path)
    beside = path.with_name(weights_file(path))
    if beside.exists():
        beside.unlink()
    if keeps_weights_beside(weight_bytes(model)):
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=beside.name, size_threshold=1024)
    else:
        onnx.save(model, str(path))
    return path


def settle_graph_file(path: str | os.PathLike) -> Path:
    """Rewrite the graph file at `path` as `save_graph` would write it, when it is not already so."""
    import onnx

    path = Path(path)
    beside = path.with_name(weights_file(path))
    if not beside.exists() and not keeps_weights_beside(path.stat().st_size):  # small, one file: as it should be
        return path
    model = onnx.load(str(path))
    if keeps_weights_beside(weight_bytes(model)) == beside.exists():
        return path
    return save_graph(model, path)
