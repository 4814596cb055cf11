"""The specs of the text bundle kinds: the graphs to export, their axis tables, the cache record.

    plain            model.onnx: the model's outputs for its inputs (input_ids, attention_mask, ... or pixel_values)
    cached-decoder   model.onnx: one graph for the prompt and each generated token, with past and
                     present keys/values (B, Hkv, P, hd), Hkv the key/value heads (fewer than the query
                     heads with grouped-query attention); the mask covers past + new tokens (`total`);
                     `logits_to_keep` (one int64) k picks the last k positions' logits (B, k, V), 0 all
    seq2seq          encoder.onnx: source -> cross.{i}.key/.value (B, H, S, hd), computed once per input;
                     model.onnx: the cached decoder, reading the cross-attention keys/values every step

Each kind is registered, with its parity gate, in export/kinds.py; a new kind is a function that
returns an `ExportSpec` (here or in a module of its own, as export/speech.py), a gate, and one entry there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeformer.modeling.models.attention import attention_nodes_per_layer
from edgeformer.modeling.models.conformer_stream import StreamGeometry
from edgeformer.modeling.models.transformer import LayerCache, Transformer
from edgeformer.runtime.bundle import (CACHED_DECODER, LOGITS_TO_KEEP, MODEL_FILE, PLAIN, SEQ2SEQ, CacheRecord,
                                       StreamRecord, TensorSpec)
from edgeformer.runtime.inputs import GLOBAL_MASK

from .onnx import ATTENTION_OPSETS, Axis, ExportError, GraphExport

ENCODER_FILE = "encoder.onnx"


def cache_names(n_layers: int) -> tuple[list[str], list[str]]:
    """(past inputs, present outputs), layer by layer, key before value."""
    past = [f"past_key_values.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    return past, present


def cross_names(n_layers: int) -> list[str]:
    return [f"cross.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]


class _Outputs(torch.nn.Module):
    """Returns the model's outputs as a tuple in `output_names` order (ONNX outputs are positional)."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model
        self.names = model.output_names

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, pixel_values=None, global_attention_mask=None):
        out = self.model(input_ids, attention_mask, token_type_ids, pixel_values, global_attention_mask=global_attention_mask)
        return tuple(out[n] for n in self.names)


class _CachedOutputs(torch.nn.Module):
    """The decoder with a key/value cache as positional tensors in and out (see `cache_names`)."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, past, logits_to_keep):
        cache = [LayerCache(past[2 * i], past[2 * i + 1]) for i in range(self.model.cfg.n_layers)]
        out = [self.model(input_ids, attention_mask, position_ids=position_ids, cache=cache,
                          logits_to_keep=logits_to_keep)["logits"]]
        for layer in cache:
            out += [layer.key, layer.value]
        return tuple(out)


class _Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        out = []
        for layer in self.model.cross_cache(self.model.encode(input_ids, attention_mask)):
            out += [layer.key, layer.value]
        return tuple(out)


class _Decoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, encoder_attention_mask, past, cross):
        L = self.model.cfg.n_layers
        cache = [LayerCache(past[2 * i], past[2 * i + 1]) for i in range(L)]
        memory = [LayerCache(cross[2 * i], cross[2 * i + 1]) for i in range(L)]
        out = [self.model.decode(input_ids, memory, encoder_attention_mask, cache)]
        for layer in cache:
            out += [layer.key, layer.value]
        return tuple(out)


@dataclass
class ExportSpec:
    """What the export pipeline (export.bundle) needs for one bundle kind."""

    kind: str
    graphs: list[GraphExport]  # the main graph (model.onnx) first
    cache: CacheRecord | None = None
    attention_layers: list[int] | None = None  # expected attention nodes per graph
    stream: StreamRecord | None = None


@dataclass(frozen=True)
class ExportRequest:
    """What `edgeformer export` was asked for besides the checkpoint: a key/value cache (decoders), or
    a streaming step (a streaming Conformer) cut as `stream` says."""

    kv_cache: bool = False
    stream: StreamGeometry | None = None


def ids_spec(name: str, axes: tuple, vocab_size: int) -> TensorSpec:
    return TensorSpec(name, "int64", axes, min=0, max=vocab_size - 1)


def mask_spec(name: str, axes: tuple) -> TensorSpec:
    return TensorSpec(name, "int64", axes, min=0, max=1)


def plain_spec(model: Transformer, tokenizer=None, request=None) -> ExportSpec:
    """Inputs as the model reads them; two rows and more than one token, so no axis is specialised to a constant."""
    cfg = model.cfg
    batch = Axis(1, None, torch.export.Dim("batch"))
    if cfg.vision:
        side, channels = cfg.vision.image_size, cfg.vision.num_channels
        inputs = [TensorSpec("pixel_values", "float32", ("batch", channels, side, side))]
        kwargs = {"pixel_values": torch.randn(2, channels, side, side)}
        axes = {"batch": batch}
    else:
        T = min(16, cfg.max_len)
        inputs = [ids_spec("input_ids", ("batch", "seq"), cfg.vocab_size), mask_spec("attention_mask", ("batch", "seq"))]
        kwargs = {"input_ids": torch.randint(0, cfg.vocab_size, (2, T)), "attention_mask": torch.ones(2, T, dtype=torch.long)}
        if cfg.type_vocab_size:
            inputs.append(TensorSpec("token_type_ids", "int64", ("batch", "seq"), min=0, max=cfg.type_vocab_size - 1))
            kwargs["token_type_ids"] = torch.zeros(2, T, dtype=torch.long)
        if cfg.attention.kind == "longformer":  # which tokens are global: up to global_tokens per row
            inputs.append(mask_spec(GLOBAL_MASK, ("batch", "seq")))
            kwargs[GLOBAL_MASK] = (torch.arange(T) < min(cfg.attention.global_tokens, T)).long().expand(2, T).contiguous()
        axes = {"batch": batch, "seq": Axis(1, cfg.max_len, torch.export.Dim("seq", max=cfg.max_len))}
    graph = GraphExport(MODEL_FILE, _Outputs(model), inputs, model.output_names, axes, kwargs=kwargs,
                        attention_count=cfg.n_layers * attention_nodes_per_layer(cfg))
    return ExportSpec(PLAIN, [graph])


def cached_spec(model: Transformer, tokenizer=None, request=None) -> ExportSpec:
    """Two rows, three new tokens after five cached ones; every axis is left to the exporter (Dim.AUTO),
    which works out that the mask covers past + current tokens. `logits_to_keep` is an int64 input of
    (transformers' name and meaning: the last k positions, 0 all), so the logits' length is its own axis."""
    cfg = model.cfg
    if cfg.arch != "decoder":
        raise ExportError(f"a key/value cache is for decoders; this checkpoint is an {cfg.arch}")
    if cfg.attention.kind not in ("full", "local"):
        raise ExportError(f"attention_kind={cfg.attention.kind} has no key/value cache; expected full or local, "
                          "or an export without --kv-cache")
    B, T, P, H, hd = 2, 3, 5, cfg.kv_heads, cfg.head_dim  # the cache holds the key/value heads only
    past, present = cache_names(cfg.n_layers)
    inputs = [ids_spec("input_ids", ("batch", "seq"), cfg.vocab_size), mask_spec("attention_mask", ("batch", "total")),
              TensorSpec("position_ids", "int64", ("batch", "seq"), min=0, max=cfg.max_len - 1)]
    inputs += [TensorSpec(n, "float32", ("batch", H, "past", hd)) for n in past]
    inputs.append(TensorSpec(LOGITS_TO_KEEP, "int64", (1,), min=0, max=cfg.max_len))
    args = (torch.randint(0, cfg.vocab_size, (B, T)), torch.ones(B, P + T, dtype=torch.long),
            torch.arange(P, P + T).expand(B, T).contiguous(), [torch.randn(B, H, P, hd) for _ in past],
            torch.tensor([1], dtype=torch.long))
    axes = {"batch": Axis(1), "seq": Axis(1, cfg.max_len), "past": Axis(0, cfg.max_len - 1),
            "total": Axis(1, cfg.max_len)}
    outputs = {"logits": ("batch", "kept", None), **{n: ("batch", None, "total", None) for n in present}}
    graph = GraphExport(MODEL_FILE, _CachedOutputs(model), inputs, ["logits"] + present, axes, args=args,
                        output_axes=outputs, attention_count=cfg.n_layers)
    cache = CacheRecord(cfg.n_layers, H, hd, past, present, cfg.max_len, cfg.pad_id, logits_to_keep=LOGITS_TO_KEEP)
    return ExportSpec(CACHED_DECODER, [graph], cache)


def seq2seq_spec(model, tokenizer=None, request=None) -> ExportSpec:
    """encoder.onnx and the cached decoder model.onnx; the decoder's first token is the pad token."""
    cfg = model.cfg
    L, H, hd = cfg.n_layers, cfg.n_heads, cfg.head_dim
    past, present = cache_names(L)
    cross = cross_names(L)
    B, S, T, P = 2, 6, 3, 4
    axes = {"batch": Axis(1), "seq": Axis(1, cfg.max_len), "src": Axis(1, cfg.max_len), "past": Axis(0, cfg.max_len - 1)}
    src = ("batch", "src")
    enc_inputs = [ids_spec("input_ids", src, cfg.vocab_size), mask_spec("attention_mask", src)]
    encoder = GraphExport(ENCODER_FILE, _Encoder(model), enc_inputs, cross, axes,
                          args=(torch.randint(0, cfg.vocab_size, (B, S)), torch.ones(B, S, dtype=torch.long)),
                          output_axes={n: ("batch", None, "src", None) for n in cross}, attention_count=L)
    dec_inputs = [ids_spec("input_ids", ("batch", "seq"), cfg.vocab_size), mask_spec("encoder_attention_mask", src)]
    dec_inputs += [TensorSpec(n, "float32", ("batch", H, "past", hd)) for n in past]
    dec_inputs += [TensorSpec(n, "float32", ("batch", H, "src", hd)) for n in cross]
    args = (torch.randint(0, cfg.vocab_size, (B, T)), torch.ones(B, S, dtype=torch.long),
            [torch.randn(B, H, P, hd) for _ in past], [torch.randn(B, H, S, hd) for _ in cross])
    decoder = GraphExport(MODEL_FILE, _Decoder(model), dec_inputs, ["logits"] + present, axes, args=args,
                          output_axes={"logits": ("batch", "seq", None), **{n: ("batch", None, "total", None) for n in present}},
                          attention_count=2 * L)  # self- and cross-attention in every layer
    cache = CacheRecord(L, H, hd, past, present, cfg.max_len, cfg.pad_id, start_id=cfg.pad_id,
                        eos_id=tokenizer.eos_id if tokenizer is not None else None, cross=cross,
                        encoder=ENCODER_FILE, encoder_inputs=enc_inputs)
    return ExportSpec(SEQ2SEQ, [decoder, encoder], cache)


def check_attention_mode(attention: str) -> None:
    if attention not in ATTENTION_OPSETS:
        raise ExportError(f"unknown attention mode {attention!r}; expected one of: {', '.join(ATTENTION_OPSETS)}")
