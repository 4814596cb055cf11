"""Running a graph with its intermediate tensors exposed.

One ONNX Runtime session, run once per input batch: every tensor that has a reference value is made
a graph output (ONNX Runtime accepts outputs without declared types), so one run returns every
tensor the comparison needs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from .graph import DebugError


def run_exposed(model: onnx.ModelProto, tensors: Sequence[str], feeds_list: Sequence[Mapping[str, np.ndarray]],
                base_dir: str | os.PathLike | None = None) -> list[dict[str, np.ndarray]]:
    """Run `model` once per feed dict with `tensors` added as graph outputs; float outputs only.

    ONNX Runtime's graph optimizations are off, so every tensor is the one the graph writes.
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for t in tensors:
        if t not in known:
            probe.graph.output.add().name = t  # no type: onnxruntime takes the producer's
            known.add(t)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    inputs = {i.name for i in probe.graph.input}
    with tempfile.TemporaryDirectory() as tmp:
        if probe.ByteSize() > 1_800_000_000:  # past protobuf's 2 GB: weights beside the graph
            path = Path(tmp) / "probe.onnx"
            onnx.save(probe, str(path), save_as_external_data=True, location="probe.onnx.data")
            source = str(path)
        else:
            source = probe.SerializeToString()
        try:
            session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise DebugError(f"onnxruntime cannot run the graph with its intermediate tensors exposed: {first}") from None
        names = [o.name for o in session.get_outputs()]
        results = []
        for feeds in feeds_list:
            values = session.run(names, {k: v for k, v in feeds.items() if k in inputs})
            results.append({n: v for n, v in zip(names, values)
                            if isinstance(v, np.ndarray) and v.dtype.kind == "f"})
    return results
