"""The parity gate for LSH attention: the same function given the same hash decisions.

A hash is a discrete decision (an ArgMax over rotated keys). A key within float noise of a bucket
boundary can land in one bucket under PyTorch and in the other under ONNX Runtime; the token then
attends to other keys and its output moves by far more than 1e-4, although both computed the same
function. On random base-size weights that happens a few times in 100,000 decisions. So for an LSH
model the gate checks the two things that can be checked exactly:

    bundle graph, with every ArgMax (one per layer and round) as an extra output
        ──► ONNX Runtime ──► outputs, bucket ids ──┐
    PyTorch, its bucket ids replaced by those      ├─► outputs within atol at real positions
        ──► outputs, and its own ids ──────────────┴─► own ids agree on >= HASH_AGREEMENT of real tokens

A graph whose hash differs from PyTorch's (other rotations, another bucket count) fails the second
check; one whose attention differs fails the first. The shipped graph is what runs: the extra
outputs are added to an in-memory copy, which computes the same nodes.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import onnx
import onnxruntime as ort
import torch

from edgeformer.modeling.models.lsh import FORCED_BUCKETS, LSHAttention
from edgeformer.modeling.models.transformer import Transformer
from edgeformer.runtime.bundle import MODEL_FILE
from edgeformer.runtime.inputs import example_inputs
from edgeformer.runtime.model import Model
from edgeformer.runtime.sessions import create_session

from .onnx import ExportError
from .parity import FLOAT32_ATOL, ParityReport, case_parity, default_cases

HASH_AGREEMENT = 0.999  # share of real tokens' hash decisions PyTorch and the bundle must share


def lsh_layers(model: Transformer) -> list[LSHAttention]:
    return [m for m in model.modules() if isinstance(m, LSHAttention)]


@contextlib.contextmanager
def forced_buckets(model: Transformer, ids: list[np.ndarray]) -> Iterator[list[dict]]:
    """Run `model` with the bucket ids `ids` (layer by layer, round by round, each (B, H, Tp)) in this
    context only; yields each layer's tally of decisions and disagreements."""
    layers = lsh_layers(model)
    rounds = layers[0].rotations.shape[0] if layers else 0
    tallies = [{"disagree": 0, "decided": 0} for _ in layers]
    forced = {layer: ([torch.from_numpy(a) for a in ids[i * rounds:(i + 1) * rounds]], tallies[i])
              for i, layer in enumerate(layers)}
    token = FORCED_BUCKETS.set(forced)
    try:
        yield tallies
    finally:
        FORCED_BUCKETS.reset(token)


def hash_session(bundle: Model) -> tuple[ort.InferenceSession, list[str]]:
    """A session over the bundle's graph, with the runtime's settings, that also returns every ArgMax's
    output in graph order."""
    if bundle.manifest.graph != MODEL_FILE:
        raise ExportError(f"{bundle.bundle.path} runs {bundle.manifest.graph}; the LSH parity gate reads "
                          f"{MODEL_FILE}: check the bundle this deployment was made from")
    proto = onnx.load(str(bundle.bundle.model_path))
    names = [n.output[0] for n in proto.graph.node if n.op_type == "ArgMax"]
    known = {o.name for o in proto.graph.output}
    proto.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.INT64, None)
                              for n in names if n not in known)
    session, _ = create_session(proto.SerializeToString(), ["cpu"])
    return session, names


def check_lsh_parity(model: Transformer, bundle: Model, cases: list[tuple[int, int]] | None = None,
                     atol: float = FLOAT32_ATOL, seed: int = 0) -> ParityReport:
    """check_parity for an LSH model: outputs under the bundle's hash decisions, and the decisions' agreement."""
    model = model.eval()
    layers = lsh_layers(model)
    session, argmax = hash_session(bundle)
    expected = len(layers) * (layers[0].rotations.shape[0] if layers else 0)
    if len(argmax) != expected:
        raise ExportError(f"the LSH graph has {len(argmax)} ArgMax nodes; expected one per layer and hash round "
                          f"({expected})")
    inputs, outputs = bundle.manifest.inputs, bundle.manifest.outputs
    rng = np.random.default_rng(seed)
    report = ParityReport(atol)
    disagree = decided = 0
    for batch, seq in cases or default_cases(model.cfg.max_len):
        feeds = example_inputs(inputs, {"batch": batch, "seq": seq}, rng, padded=True)
        got = session.run([s.name for s in outputs] + argmax, feeds)
        with forced_buckets(model, got[len(outputs):]) as tallies, torch.no_grad():
            ref = model(**{name: torch.from_numpy(value) for name, value in feeds.items()})
        disagree += sum(t["disagree"] for t in tallies)
        decided += sum(t["decided"] for t in tallies)
        report.cases.append(case_parity(batch, seq, feeds, outputs, ref, dict(zip([s.name for s in outputs], got))))
    report.hash_agreement = 1.0 - disagree / max(decided, 1)
    report.hash_required = HASH_AGREEMENT
    return report
