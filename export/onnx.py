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

from edgeformer.modeling.model import LayerCache, Transformer
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


class _CachedOutputs(torch.nn.Module):
    """The decoder with a key/value cache as positional tensors in and out (see `cache_names`)."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, past):
        cache = [LayerCache(past[2 * i], past[2 * i + 1]) for i in range(self.model.cfg.n_layers)]
        out = [self.model(input_ids, attention_mask, position_ids=position_ids, cache=cache)["logits"]]
        for layer in cache:
            out += [layer.key, layer.value]
        return tuple(out)


def cache_names(n_layers: int) -> tuple[list[str], list[str]]:
    """(past inputs, present outputs), layer by layer, key before value."""
    past = [f"past_key_values.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    return past, present


def cache_example(model: Transformer) -> tuple[tuple, dict]:
    """Example inputs for the cached decoder: two rows, three new tokens after five cached ones.

    Every axis is left to the exporter (Dim.AUTO), which works out that the mask covers past +
    current tokens; the graph's axes are renamed to batch/seq/past/total afterwards.
    """
    cfg = model.cfg
    B, T, P = 2, 3, 5
    hd = cfg.d_model // cfg.n_heads
    ids = torch.randint(0, cfg.vocab_size, (B, T))
    mask = torch.ones(B, P + T, dtype=torch.long)
    positions = torch.arange(P, P + T).expand(B, T).contiguous()
    past = [torch.randn(B, cfg.n_heads, P, hd) for _ in range(2 * cfg.n_layers)]
    auto = torch.export.Dim.AUTO
    dynamic = {"input_ids": {0: auto, 1: auto}, "attention_mask": {0: auto, 1: auto}, "position_ids": {0: auto, 1: auto},
               "past": [{0: auto, 2: auto}] * len(past)}
    return (ids, mask, positions, past), dynamic


def _name_cache_axes(graph: ir.Model, n_layers: int) -> None:
    """Give the cached graph's inputs and outputs the manifest's axis names instead of s0, s1, ..."""
    past, present = cache_names(n_layers)
    axes = {"input_ids": ("batch", "seq"), "attention_mask": ("batch", "total"), "position_ids": ("batch", "seq"),
            "logits": ("batch", "seq", None)}
    axes.update({name: ("batch", None, "past", None) for name in past})
    axes.update({name: ("batch", None, "total", None) for name in present})
    for value in list(graph.graph.inputs) + list(graph.graph.outputs):
        names = axes.get(value.name)
        if names is None or value.shape is None:
            raise ExportError(f"the cached graph has an unexpected input or output {value.name!r}")
        value.shape = ir.Shape([ir.SymbolicDim(n) if n else d for n, d in zip(names, value.shape)])


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


def trace_onnx(model: Transformer, attention: str = "fused", kv_cache: bool = False) -> ir.Model:
    """The dynamo exporter's graph of `model`, before edgeformer's passes.

    With `kv_cache` (decoders), one graph serves the prompt (an empty past) and every generated
    token: inputs input_ids, attention_mask (past + current), position_ids and
    past_key_values.{i}.key/.value (B, H, P, hd); outputs logits and present.{i}.key/.value.
    """
    if attention not in ATTENTION_OPSETS:
        raise ExportError(f"unknown attention mode {attention!r}; expected one of: {', '.join(ATTENTION_OPSETS)}")
    if kv_cache and model.cfg.arch != "decoder":
        raise ExportError(f"a key/value cache is for decoders; this checkpoint is an {model.cfg.arch}")
    model = model.eval()
    if kv_cache:
        args, dynamic = cache_example(model)
        past, present = cache_names(model.cfg.n_layers)
        module, kwargs = _CachedOutputs(model), {}
        input_names, output_names = ["input_ids", "attention_mask", "position_ids"] + past, ["logits"] + present
    else:
        kwargs, dynamic = example_kwargs(model)
        module, args, input_names, output_names = _Outputs(model), (), list(kwargs), model.output_names
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(
                module, args, kwargs=kwargs, dynamo=True, opset_version=ATTENTION_OPSETS[attention],
                input_names=input_names, output_names=output_names, dynamic_shapes=dynamic,
                optimize=True, verbose=False, report=False,
            )
    except EdgeformerError:
        raise
    except Exception as e:  # the exporter's failures come as many exception types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ExportError(f"torch.onnx.export failed: {first}") from e
    if kv_cache:
        _name_cache_axes(program.model, model.cfg.n_layers)
    return program.model


def export_onnx(model: Transformer, path: str | os.PathLike, attention: str = "fused", kv_cache: bool = False) -> Path:
    """Write `model` to `path` as ONNX, with inputs named as `model.cfg.input_names` (or the cache's, see trace_onnx)."""
    graph = trace_onnx(model, attention, kv_cache)
    if attention == "fused":
        attention_to_3d(graph)
    RemoveUnusedNodesPass()(graph)
    weights = sum(v.const_value.nbytes for v in graph.graph.initializers.values() if v.const_value is not None)
    # A protobuf file holds at most 2 GB: past that the weights go to a file beside the graph.
    ir.save(graph, str(path), external_data=f"{Path(path).name}.data" if weights > 1_800_000_000 else None)
    return Path(path)
