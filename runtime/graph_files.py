"""How a bundle's graph file is written: its weights inside it, or beside it in GRAPH.data past a size.

A graph whose weights pass EXTERNAL_DATA_BYTES keeps them in `model.onnx.data` next to
`model.onnx`. onnxruntime then maps that file instead of parsing a protobuf that holds them, so
a session never has the protobuf's copy and its own at once: SmolLM2-135M int4 (116 MB) peaked at
272 MB loading that way against 324 MB from one file (benchmarks/smollm2.py measures
`edgeformer generate`). A protobuf also cannot hold more than 2 GB. Smaller graphs stay one
file, which is what a browser or a phone app most easily ships (the web target writes every graph
as one file).

This module decides; the writers (export, quantize, deploy) call onnx themselves, since the runtime
needs numpy and onnxruntime alone:

    onnx.save(model, str(path), **save_options(model, path))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

EXTERNAL_DATA_BYTES = 64 << 20


def weights_file(graph_file: str | os.PathLike) -> str:
    """The name of the file beside `graph_file` that holds its weights when they are kept outside it."""
    return f"{Path(graph_file).name}.data"


def keeps_weights_beside(weight_bytes: int) -> bool:
    return weight_bytes > EXTERNAL_DATA_BYTES


def weight_bytes(model: Any) -> int:
    """The serialized size of an onnx.ModelProto's initializers (protobuf's own count; no onnx import)."""
    return sum(t.ByteSize() for t in model.graph.initializer)


def graph_bytes(path: str | os.PathLike) -> int:
    """The size of a graph on disk: its file and, where it keeps them beside it, its weights."""
    path = Path(path)
    beside = path.with_name(weights_file(path))
    return path.stat().st_size + (beside.stat().st_size if beside.exists() else 0)


def fresh_weights_file(path: str | os.PathLike) -> Path:
    """The weights file beside the graph about to be written at `path`, one left by an earlier write removed."""
    beside = Path(path).with_name(weights_file(path))
    if beside.exists():
        beside.unlink()
    return beside


def save_options(model: Any, path: str | os.PathLike) -> dict[str, Any]:
    """onnx.save's keyword arguments for writing `model` to `path`: its weights beside it past
    EXTERNAL_DATA_BYTES (fresh_weights_file). Writing beside it moves the tensors' bytes out of `model`."""
    beside = fresh_weights_file(path)
    if not keeps_weights_beside(weight_bytes(model)):
        return {}
    return {"save_as_external_data": True, "all_tensors_to_one_file": True, "location": beside.name,
            "size_threshold": 1024}
