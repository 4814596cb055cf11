"""Encoder-decoder export: an encoder graph and a cached decoder graph in one bundle, behind a parity gate.

    encoder.onnx   input_ids, attention_mask (B, S)  ->  cross.{i}.key/.value (B, H, S, hd)
    model.onnx     input_ids (B, T) target tokens after P cached ones, encoder_attention_mask (B, S),
                   past_key_values.{i}.key/.value (B, H, P, hd), cross.{i}.key/.value
                   ->  logits (B, T, V), present.{i}.key/.value (B, H, P + T, hd)

The encoder graph ends with each decoder layer's cross-attention keys/values, so they are
computed once per input and fed to every decoder step unchanged; the decoder's own cache grows
by one token per step. Every attention (encoder self, decoder self, decoder cross) is one fused
`Attention` node. The decoder is `model.onnx`, so `runtime.load` opens it like any bundle; the
manifest's `model.cache` names the encoder file and the cache tensors.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import torch
from onnx_ir.passes.common import RemoveUnusedNodesPass

from edgeformer import runtime
from edgeformer.modeling import checkpoint
from edgeformer.modeling.model import LayerCache
from edgeformer.modeling.seq2seq import Seq2SeqTransformer
from edgeformer.runtime.artifacts import atomic_directory, sha256_file
from edgeformer.runtime.bundle import MODEL_FILE, TOKENIZER_FILE, Manifest, TensorSpec, write_manifest
from edgeformer.runtime.generate import encoder_runner, right_pad

from .checks import check_graph
from .onnx import ATTENTION_OPSETS, ExportError, _quiet, cache_names
from .parity import FLOAT32_ATOL, GATE_SEED, CaseParity, ParityFailure, ParityReport, compare
from .passes import attention_to_3d

ENCODER_FILE = "encoder.onnx"


def cross_names(n_layers: int) -> list[str]:
    return [f"cross.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]


class _Encoder(torch.nn.Module):
    def __init__(self, model: Seq2SeqTransformer):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        out = []
        for layer in self.model.cross_cache(self.model.encode(input_ids, attention_mask)):
            out += [layer.key, layer.value]
        return tuple(out)


class _Decoder(torch.nn.Module):
    def __init__(self, model: Seq2SeqTransformer):
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


def _trace(module, args, input_names, output_names, dynamic, opset) -> ir.Model:
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(module, args, dynamo=True, opset_version=opset, input_names=input_names,
                                        output_names=output_names, dynamic_shapes=dynamic, optimize=True,
                                        verbose=False, report=False)
    except Exception as e:  # the exporter's failures come as many exception types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ExportError(f"torch.onnx.export failed: {first}") from e
    return program.model


def _name_axes(graph: ir.Model, axes: dict[str, tuple]) -> None:
    for value in list(graph.graph.inputs) + list(graph.graph.outputs):
        names = axes[value.name]
        value.shape = ir.Shape([ir.SymbolicDim(n) if n else d for n, d in zip(names, value.shape)])


def _save(graph: ir.Model, path: Path, attention: str) -> None:
    if attention == "fused":
        attention_to_3d(graph)
    RemoveUnusedNodesPass()(graph)
    ir.save(graph, str(path))


def export_seq2seq_onnx(model: Seq2SeqTransformer, directory: Path, attention: str = "fused") -> None:
    """Write encoder.onnx and model.onnx (the cached decoder) into `directory`."""
    cfg = model.cfg
    L, H, hd = cfg.n_layers, cfg.n_heads, cfg.d_model // cfg.n_heads
    past, present = cache_names(L)
    cross = cross_names(L)
    auto = torch.export.Dim.AUTO
    B, S, T, P = 2, 6, 3, 4
    src = (torch.randint(0, cfg.vocab_size, (B, S)), torch.ones(B, S, dtype=torch.long))
    encoder = _trace(_Encoder(model), src, ["input_ids", "attention_mask"], cross,
                     {"input_ids": {0: auto, 1: auto}, "attention_mask": {0: auto, 1: auto}}, ATTENTION_OPSETS[attention])
    _name_axes(encoder, {"input_ids": ("batch", "src"), "attention_mask": ("batch", "src"),
                         **{n: ("batch", None, "src", None) for n in cross}})
    _save(encoder, directory / ENCODER_FILE, attention)
    args = (torch.randint(0, cfg.vocab_size, (B, T)), torch.ones(B, S, dtype=torch.long),
            [torch.randn(B, H, P, hd) for _ in past], [torch.randn(B, H, S, hd) for _ in cross])
    dynamic = {"input_ids": {0: auto, 1: auto}, "encoder_attention_mask": {0: auto, 1: auto},
               "past": [{0: auto, 2: auto}] * len(past), "cross": [{0: auto, 2: auto}] * len(cross)}
    decoder = _trace(_Decoder(model), args, ["input_ids", "encoder_attention_mask"] + past + cross, ["logits"] + present,
                     dynamic, ATTENTION_OPSETS[attention])
    _name_axes(decoder, {"input_ids": ("batch", "seq"), "encoder_attention_mask": ("batch", "src"),
                         "logits": ("batch", "seq", None), **{n: ("batch", None, "past", None) for n in past},
                         **{n: ("batch", None, "src", None) for n in cross},
                         **{n: ("batch", None, "total", None) for n in present}})
    _save(decoder, directory / MODEL_FILE, attention)


def default_seq2seq_cases(max_len: int) -> list[tuple[int, int, int]]:
    """(batch, source length, decoder steps): a one-token source, padded batches, the longest source."""
    return [(1, 1, 3), (3, min(9, max_len), 4), (2, min(33, max_len), 3), (2, max_len, 2)]


def check_seq2seq_parity(model: Seq2SeqTransformer, encoder, decoder, cases=None, atol: float = FLOAT32_ATOL,
                         seed: int = 0) -> ParityReport:
    """Random padded sources through both encoders, then decoder steps, each side fed its own outputs."""
    model = model.eval()
    cfg = model.cfg
    L = cfg.n_layers
    past_names, present_names = cache_names(L)
    cross = cross_names(L)
    rng = np.random.default_rng(seed)
    report = ParityReport(atol)
    for batch, src_len, steps in cases or default_seq2seq_cases(cfg.max_len):
        lengths = [src_len] + [int(n) for n in rng.integers(1, src_len + 1, size=batch - 1)]
        ids, mask = right_pad([rng.integers(0, cfg.vocab_size, size=n).tolist() for n in lengths], cfg.pad_id)
        with torch.no_grad():
            memory = model.cross_cache(model.encode(torch.from_numpy(ids), torch.from_numpy(mask)))
        got_cross = encoder({"input_ids": ids, "attention_mask": mask})
        valid = np.broadcast_to(mask.astype(bool)[:, None, :], (batch, cfg.n_heads, ids.shape[1]))
        results = [compare(f"cross.{i}.{kv}", getattr(layer, kv).numpy(), np.asarray(got_cross[f"cross.{i}.{kv}"]), valid)
                   for i, layer in enumerate(memory) for kv in ("key", "value")]
        report.cases.append(CaseParity(batch, ids.shape[1], min(lengths) < src_len, results))
        cache = model.empty_cache(batch)
        hd = cfg.d_model // cfg.n_heads
        past = {n: np.zeros((batch, cfg.n_heads, 0, hd), np.float32) for n in past_names}
        tokens = np.full((batch, 1), cfg.pad_id, dtype=np.int64)  # the start token
        for step in range(steps):
            with torch.no_grad():
                ref = model.decode(torch.from_numpy(tokens), memory, torch.from_numpy(mask), cache).numpy()
            got = decoder({"input_ids": tokens, "encoder_attention_mask": mask, **past,
                           **{n: got_cross[n] for n in cross}})
            results = [compare("logits", ref, np.asarray(got["logits"]), None)]
            results += [compare(f"present.{i}.{kv}", getattr(layer, kv).numpy(), np.asarray(got[f"present.{i}.{kv}"]), None)
                        for i, layer in enumerate(cache) for kv in ("key", "value")]
            report.cases.append(CaseParity(batch, 1, min(lengths) < src_len, results, past=step))
            past = {p: np.asarray(got[q]) for p, q in zip(past_names, present_names)}
            tokens = rng.integers(0, cfg.vocab_size, size=(batch, 1))
    return report


def seq2seq_cache_record(model: Seq2SeqTransformer, tokenizer) -> dict:
    cfg = model.cfg
    past, present = cache_names(cfg.n_layers)
    return {"layers": cfg.n_layers, "heads": cfg.n_heads, "head_dim": cfg.d_model // cfg.n_heads,
            "layout": ["batch", "heads", "past", "head_dim"], "dtype": "float32", "past": past, "present": present,
            "max_len": cfg.max_len, "pad_id": cfg.pad_id, "start_id": cfg.pad_id,
            "eos_id": tokenizer.eos_id if tokenizer is not None else None,
            "cross": cross_names(cfg.n_layers), "encoder": ENCODER_FILE}


def export_seq2seq_bundle(ckpt: str | os.PathLike, out: str | os.PathLike, attention: str = "fused",
                          atol: float = FLOAT32_ATOL, cases=None, overwrite: bool = False):
    """The seq2seq branch of export.bundle.export_bundle (which see)."""
    from .bundle import ExportResult, output_specs, tool_versions

    model = checkpoint.load(ckpt)
    cfg = model.cfg
    ckpt = Path(ckpt)
    L, H, hd = cfg.n_layers, cfg.n_heads, cfg.d_model // cfg.n_heads
    past, _ = cache_names(L)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        export_seq2seq_onnx(model, tmp, attention)
        encoder_graph, decoder_graph = onnx.load(str(tmp / ENCODER_FILE)), onnx.load(str(tmp / MODEL_FILE))
        record = check_graph(decoder_graph, attention, 2 * L)  # self- and cross-attention in every layer
        record["encoder"] = check_graph(encoder_graph, attention, L)
        tokenizer = checkpoint.load_tokenizer(ckpt)
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER_FILE)
        ids = ("batch", "src")
        cache = seq2seq_cache_record(model, tokenizer)
        cache["encoder_inputs"] = [TensorSpec("input_ids", "int64", ids, 0, cfg.vocab_size - 1).to_json(),
                                   TensorSpec("attention_mask", "int64", ids, 0, 1).to_json()]
        cache["encoder_outputs"] = [s.to_json() for s in output_specs(encoder_graph)]
        manifest = Manifest(
            inputs=[TensorSpec("input_ids", "int64", ("batch", "seq"), 0, cfg.vocab_size - 1),
                    TensorSpec("encoder_attention_mask", "int64", ids, 0, 1)]
            + [TensorSpec(n, "float32", ("batch", H, "past", hd)) for n in past]
            + [TensorSpec(n, "float32", ("batch", H, "src", hd)) for n in cross_names(L)],
            outputs=output_specs(decoder_graph),
            axes={"batch": {"min": 1}, "seq": {"min": 1, "max": cfg.max_len}, "src": {"min": 1, "max": cfg.max_len},
                  "past": {"min": 0, "max": cfg.max_len - 1}},
            opset=ATTENTION_OPSETS[attention],
            model={"config": cfg.to_dict(), "task": cfg.task, "labels": None, "parameters": model.num_parameters(),
                   "checkpoint": {"name": ckpt.name, "sha256": sha256_file(ckpt / checkpoint.WEIGHTS_FILE)},
                   "cache": cache},
            attention=record,
            tools=tool_versions(),
        )
        write_manifest(tmp, manifest)
        bundle = runtime.load(tmp)
        encoder = encoder_runner(bundle)
        report = check_seq2seq_parity(model, encoder, bundle, cases, atol, GATE_SEED)
        manifest.parity = report.to_json()
        write_manifest(tmp, manifest)
        if not report.passed:
            raise ParityFailure(report, f"export of {ckpt}")
    return ExportResult(Path(out), manifest, report)
