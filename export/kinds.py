"""Every kind of bundle edgeformer exports, in one table: which models it takes, its spec, its parity gate.

    kind            takes                                    spec                   parity gate
    streaming-      a request for a streaming step           speech_stream.         speech_stream.
      speech          (--streaming; refuses all but            stream_spec            check_stream_parity
                      Conformers trained to stream)
    seq2seq         arch seq2seq                             specs.seq2seq_spec     seq2seq.check_seq2seq_parity
    speech          arch conformer (raw audio in)            speech.speech_spec     speech.check_speech_parity
    cached-decoder  a model exported with a key/value cache  specs.cached_spec      cache_parity.check_cache_parity
    image           image_size > 0 (a ViT: pixels in)        specs.plain_spec       parity.check_parity
    lsh             attention_kind lsh (hashed buckets)      specs.plain_spec       lsh_parity.check_lsh_parity
    plain           any other: text encoders and decoders    specs.plain_spec       parity.check_parity

The first entry that takes a model is its kind. The names are the runtime's (runtime/kinds.py),
where the same kind says what its bundles answer; quantize/kinds.py and deploy/kinds.py key their
rules by them too. A new kind is a spec function, a gate, and one entry in KINDS (`register`).
`takes` is asked with the config and the ExportRequest (export/specs.py: --kv-cache, --streaming).
Every gate is called as gate(model, bundle, cases, atol, seed) and returns a ParityReport; the
manifest records the spec's format kind (runtime.bundle.KINDS), which several of these share
(speech, image and lsh bundles are `plain` in the format).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from edgeformer.modeling.config import ModelConfig
from edgeformer.modeling.models.conformer_stream import StreamGeometry
from edgeformer.runtime.kinds import KindOrder
from edgeformer.runtime.model import Model

from .cache_parity import check_cache_parity
from .lsh_parity import check_lsh_parity
from .onnx import ExportError, save, trace
from .parity import FLOAT32_ATOL, ParityReport, check_parity
from .seq2seq import check_seq2seq_parity
from .specs import ExportRequest, ExportSpec, cached_spec, check_attention_mode, plain_spec, seq2seq_spec
from .speech import check_speech_parity, speech_spec
from .speech_stream import check_stream_parity, stream_spec

Gate = Callable[[torch.nn.Module, Model, list | None, float, int], ParityReport]


@dataclass(frozen=True)
class ExportKind:
    name: str
    takes: Callable[[ModelConfig, ExportRequest], bool]  # (config, what export was asked for) -> is this the model's kind
    spec: Callable[..., ExportSpec]  # (model, tokenizer, ExportRequest) -> the graphs to export
    gate: Gate
    diagnosable: bool = False  # export.debug can name the node where a failed gate first diverged


def plain_gate(model, bundle: Model, cases=None, atol: float = FLOAT32_ATOL, seed: int = 0) -> ParityReport:
    return check_parity(model, bundle, bundle.manifest.inputs, bundle.manifest.outputs, cases, atol, seed)


def seq2seq_gate(model, bundle: Model, cases=None, atol: float = FLOAT32_ATOL, seed: int = 0) -> ParityReport:
    return check_seq2seq_parity(model, bundle.graph("encoder"), bundle, cases, atol, seed)


KINDS = KindOrder([
    ExportKind("streaming-speech", lambda cfg, req: req.stream is not None, stream_spec, check_stream_parity),  # refuses non-Conformers
    ExportKind("seq2seq", lambda cfg, req: cfg.arch == "seq2seq", seq2seq_spec, seq2seq_gate),
    ExportKind("speech", lambda cfg, req: cfg.arch == "conformer", speech_spec, check_speech_parity),
    ExportKind("cached-decoder", lambda cfg, req: req.kv_cache, cached_spec, check_cache_parity),  # refuses non-decoders
    ExportKind("image", lambda cfg, req: cfg.vision is not None, plain_spec, plain_gate, diagnosable=True),
    ExportKind("lsh", lambda cfg, req: cfg.attention.kind == "lsh", plain_spec, check_lsh_parity, diagnosable=True),
    ExportKind("plain", lambda cfg, req: True, plain_spec, plain_gate, diagnosable=True),
], "export kind", ExportError)


register = KINDS.register  # a new kind is tried before every kind registered so far but the catch-all plain


def kind_for(cfg: ModelConfig, kv_cache: bool = False, stream: StreamGeometry | None = None) -> ExportKind:
    return KINDS.first(cfg, ExportRequest(kv_cache, stream))


def spec_for(model, kv_cache: bool = False, tokenizer=None, stream: StreamGeometry | None = None) -> ExportSpec:
    """The spec of the bundle kind `model` exports as: seq2seq always, a cached decoder with `kv_cache`, a
    streaming step with `stream`."""
    return kind_for(model.cfg, kv_cache, stream).spec(model, tokenizer, ExportRequest(kv_cache, stream))


def trace_onnx(model, attention: str = "fused", kv_cache: bool = False):
    """The dynamo exporter's graph of `model` (its main graph), before edgeformer's passes."""
    check_attention_mode(attention)
    return trace(spec_for(model.eval(), kv_cache).graphs[0], attention)


def export_onnx(model, path: str | os.PathLike, attention: str = "fused", kv_cache: bool = False) -> Path:
    """Write `model`'s main graph to `path` as ONNX, with the inputs of its bundle kind."""
    return save(trace_onnx(model, attention, kv_cache), path, attention)
