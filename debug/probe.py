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

from edgeformer.runtime.sessions import SessionError, create_session, expose_tensors

from .graph import DebugError


def run_exposed(model: onnx.ModelProto, tensors: Sequence[str], feeds_list: Sequence[Mapping[str, np.ndarray]],
                base_dir: str | os.PathLike | None = None) -> list[dict[str, np.ndarray]]:
    """Run `model` once per feed dict with `tensors` added as graph outputs; float outputs only.

    ONNX Runtime's graph optimizations are off, so every tensor is the one the graph writes.
    """
    probe = expose_tensors(model, tensors)
    inputs = {i.name for i in probe.graph.input}
    with tempfile.TemporaryDirectory() as tmp:
        if probe.ByteSize() > 1_800_000_000:  # past protobuf's 2 GB: weights beside the graph
            path = Path(tmp) / "probe.onnx"
            onnx.save(probe, str(path), save_as_external_data=True, location="probe.onnx.data")
            source = str(path)
        else:
            source = probe.SerializeToString()
        try:
            session, _ = create_session(source, optimization="none")
        except SessionError as e:
            raise DebugError(f"onnxruntime cannot run the graph with its intermediate tensors exposed: {e.reason}") from None
        names = [o.name for o in session.get_outputs()]
        results = []
        for feeds in feeds_list:
            values = session.run(names, {k: v for k, v in feeds.items() if k in inputs})
            results.append({n: v for n, v in zip(names, values)
                            if isinstance(v, np.ndarray) and v.dtype.kind == "f"})
    return results
