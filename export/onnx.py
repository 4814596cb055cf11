"""PyTorch -> ONNX through the dynamo exporter, with dynamic batch and sequence axes.

At opset 23 each `F.scaled_dot_product_attention` becomes one standard-domain `Attention` node
(fused). At opset 18 the exporter writes MatMul/Softmax chains instead (unfused), for runtimes
that lack the `Attention` op (TensorRT before 10.x, onnxruntime before 1.22, older mobile builds).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import onnx_ir as ir
import torch
from onnx_ir.passes.common import RemoveUnusedNodesPass

from edgeformer.modeling.model import Transformer
from edgeformer.runtime.errors import EdgeformerError

from .passes import attention_to_3d

ATTENTION_OPSETS = {"fused": 23, "unfused": 18}


class ExportError(EdgeformerError):
    pass


class _Outputs(torch.nn.Module):
    """Returns the model's outputs as a tuple in `output_names` order (ONNX outputs are positional)."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model
        self.names = model.output_names

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, pixel_values=None):
        out = self.model(input_ids, attention_mask, token_type_ids, pixel_values)
        return tuple(out[n] for n in self.names)


def example_kwargs(model: Transformer) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """Example inputs for tracing and their dynamic axes.

    Two rows and more than one token, so that neither axis is specialised to a constant.
    """
    cfg = model.cfg
    batch = torch.export.Dim("batch")
    if cfg.image_size:
        pixels = torch.randn(2, cfg.num_channels, cfg.image_size, cfg.image_size)
        return {"pixel_values": pixels}, {"pixel_values": {0: batch}}
    T = min(16, cfg.max_len)
    seq = torch.export.Dim("seq", max=cfg.max_len)
    kwargs = {"input_ids": torch.randint(0, cfg.vocab_size, (2, T)), "attention_mask": torch.ones(2, T, dtype=torch.long)}
    if cfg.type_vocab_size:
        kwargs["token_type_ids"] = torch.zeros(2, T, dtype=torch.long)
    return kwargs, {name: {0: batch, 1: seq} for name in kwargs}


@contextlib.contextmanager
def _quiet():
    """The exporter narrates every step and warns about unrelated optional packages: keep that off the user's terminal."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript", "torch.fx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def trace_onnx(model: Transformer, attention: str = "fused") -> ir.Model:
    """The dynamo exporter's graph of `model`, before edgeformer's passes."""
    if attention not in ATTENTION_OPSETS:
        raise ExportError(f"unknown attention mode {attention!r}; expected one of: {', '.join(ATTENTION_OPSETS)}")
    model = model.eval()
    kwargs, dynamic = example_kwargs(model)
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(
                _Outputs(model), (), kwargs=kwargs, dynamo=True, opset_version=ATTENTION_OPSETS[attention],
                input_names=list(kwargs), output_names=model.output_names, dynamic_shapes=dynamic,
                optimize=True, verbose=False, report=False,
            )
    except EdgeformerError:
        raise
    except Exception as e:  # the exporter's failures come as many exception types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ExportError(f"torch.onnx.export failed: {first}") from e
    return program.model


def export_onnx(model: Transformer, path: str | os.PathLike, attention: str = "fused") -> Path:
    """Write `model` to `path` as ONNX, with inputs named as `model.cfg.input_names`."""
    graph = trace_onnx(model, attention)
    if attention == "fused":
        attention_to_3d(graph)
    RemoveUnusedNodesPass()(graph)
    weights = sum(v.const_value.nbytes for v in graph.graph.initializers.values() if v.const_value is not None)
    # A protobuf file holds at most 2 GB: past that the weights go to a file beside the graph.
    ir.save(graph, str(path), external_data=f"{Path(path).name}.data" if weights > 1_800_000_000 else None)
    return Path(path)
