"""Activation smoothing (SmoothQuant, Xiao et al. 2022) before int8 quantization.

A few input channels of a transformer's MatMuls carry activations tens of times larger than the
rest; one int8 scale per tensor then spends its range on them and rounds everything else away.
Dividing input channel j by s_j and multiplying weight row j by s_j leaves the product unchanged
and moves the difficulty into the weights, which are quantized per output channel:

    s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)

Every MatMul that reads the same activation shares one s (its weights are all scaled by it):

    X ──► MatMul(W_q)          X ──► Mul(1/s) ──► MatMul(diag(s)·W_q)
      └─► MatMul(W_k)    ─►                   └─► MatMul(diag(s)·W_k)
      └─► Add (residual)       X ──────────────► Add (residual)

When X is a LayerNormalization output read by nothing but those MatMuls (pre-norm blocks), 1/s is
folded into its scale and bias instead and no Mul is added.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeformer.runtime.sessions import create_session, expose_tensors

from .calibration import real_positions

ALPHAS = (0.5, 0.6, 0.7, 0.8)  # tried by "auto", on the calibration set


def weight_matmuls(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Activation name -> the MatMul nodes that multiply it by a float32 weight (an initializer); float64
    MatMuls (a speech graph's feature front end) are left exact, as the recipes leave them."""
    weights = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    groups: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            groups.setdefault(node.input[0], []).append(node)
    return groups


def activation_absmax(model: onnx.ModelProto, batches: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-channel max |x| of every weight MatMul's input over the calibration batches (real tokens only)."""
    names = list(weight_matmuls(model))
    # optimizations off: observe the graph as written
    session, _ = create_session(expose_tensors(model, names).SerializeToString(), optimization="none")
    absmax: dict[str, np.ndarray] = {}
    for feeds in batches:
        real = real_positions(feeds)
        for name, x in zip(names, session.run(names, dict(feeds))):
            x = np.abs(x)
            rows = x[real] if real is not None and x.shape[:2] == real.shape else x.reshape(-1, x.shape[-1])
            m = rows.max(axis=0)
            absmax[name] = np.maximum(absmax[name], m) if name in absmax else m
    return absmax


def smooth_matmul_inputs(model: onnx.ModelProto, absmax: Mapping[str, np.ndarray], alpha: float) -> int:
    """Rewrite `model` in place as the docstring draws; returns how many activations were smoothed."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    done = 0
    for k, (x, matmuls) in enumerate(weight_matmuls(model).items()):
        if x not in absmax:
            continue
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in matmuls]
        if any(w.ndim != 2 for w in weights):
            continue
        w_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)  # (C_in,)
        s = np.maximum(absmax[x], 1e-5) ** alpha / np.maximum(w_max, 1e-5) ** (1 - alpha)
        s = np.clip(s, 1e-2, 1e2).astype(np.float32)
        for node, w in zip(matmuls, weights):
            name = f"{node.input[1]}_smoothed"
            graph.initializer.append(numpy_helper.from_array((w * s[:, None]).astype(w.dtype), name))
            node.input[1] = name
        norm = producers.get(x)
        only_matmuls = all(c in matmuls for c in consumers.get(x, [])) and x not in graph_outputs
        if norm is not None and norm.op_type == "LayerNormalization" and only_matmuls and _fold_into_norm(norm, s, inits, graph):
            done += 1
            continue
        scale, y = f"smooth_{k}_inv_scale", f"{x}_smoothed"
        graph.initializer.append(numpy_helper.from_array(1.0 / s, scale))
        first = min(list(graph.node).index(n) for n in matmuls)
        graph.node.insert(first, helper.make_node("Mul", [x, scale], [y], name=f"smooth_{k}_mul"))
        for node in matmuls:
            node.input[0] = y
        done += 1
    _drop_unused_initializers(graph)
    return done


def _fold_into_norm(norm: onnx.NodeProto, s: np.ndarray, inits: dict, graph: onnx.GraphProto) -> bool:
    """LayerNorm(x) * gamma + beta, divided by s: gamma / s and beta / s, as new initializers."""
    if len(norm.input) < 2 or norm.input[1] not in inits or (len(norm.input) > 2 and norm.input[2] not in inits):
        return False
    for i in range(1, len(norm.input)):
        old = numpy_helper.to_array(inits[norm.input[i]])
        name = f"{norm.input[i]}_smoothed_{norm.name}"
        graph.initializer.append(numpy_helper.from_array((old / s).astype(old.dtype), name))
        norm.input[i] = name
    return True


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
