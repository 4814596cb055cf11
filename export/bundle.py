"""`edgeformer export`: checkpoint -> checked ONNX graph -> parity gate -> bundle, atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import onnx

from edgeformer import runtime
from edgeformer.modeling import checkpoint
from edgeformer.modeling.model import Transformer
from edgeformer.runtime.artifacts import atomic_directory, sha256_file
from edgeformer.runtime.bundle import MODEL_FILE, TOKENIZER_FILE, Manifest, TensorSpec, write_manifest

from .cache_parity import check_cache_parity
from .checks import check_graph
from .onnx import ATTENTION_OPSETS, cache_names, export_onnx
from .parity import FLOAT32_ATOL, GATE_SEED, ParityFailure, ParityReport, check_parity

_ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.INT64: "int64"}


@dataclass
class ExportResult:
    path: Path
    manifest: Manifest
    report: ParityReport


def tool_versions() -> dict[str, str]:
    versions = {}
    for dist in ("edgeformer", "torch", "onnx", "onnxscript", "onnxruntime"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def input_specs(model: Transformer) -> list[TensorSpec]:
    cfg = model.cfg
    if cfg.image_size:
        return [TensorSpec("pixel_values", "float32", ("batch", cfg.num_channels, cfg.image_size, cfg.image_size))]
    specs = [
        TensorSpec("input_ids", "int64", ("batch", "seq"), min=0, max=cfg.vocab_size - 1),
        TensorSpec("attention_mask", "int64", ("batch", "seq"), min=0, max=1),
    ]
    if cfg.type_vocab_size:
        specs.append(TensorSpec("token_type_ids", "int64", ("batch", "seq"), min=0, max=cfg.type_vocab_size - 1))
    return specs


def cache_input_specs(model: Transformer) -> list[TensorSpec]:
    """The cached decoder's inputs; the mask covers `total` = past + seq tokens."""
    cfg = model.cfg
    hd = cfg.d_model // cfg.n_heads
    past, _ = cache_names(cfg.n_layers)
    return [
        TensorSpec("input_ids", "int64", ("batch", "seq"), min=0, max=cfg.vocab_size - 1),
        TensorSpec("attention_mask", "int64", ("batch", "total"), min=0, max=1),
        TensorSpec("position_ids", "int64", ("batch", "seq"), min=0, max=cfg.max_len - 1),
    ] + [TensorSpec(name, "float32", ("batch", cfg.n_heads, "past", hd)) for name in past]


def cache_record(model: Transformer) -> dict:
    """The manifest's description of the cache, enough for a runtime without PyTorch to drive it."""
    cfg = model.cfg
    past, present = cache_names(cfg.n_layers)
    return {"layers": cfg.n_layers, "heads": cfg.n_heads, "head_dim": cfg.d_model // cfg.n_heads,
            "layout": ["batch", "heads", "past", "head_dim"], "dtype": "float32",
            "past": past, "present": present, "max_len": cfg.max_len, "pad_id": cfg.pad_id}


def output_specs(graph: onnx.ModelProto) -> list[TensorSpec]:
    specs = []
    for out in graph.graph.output:
        t = out.type.tensor_type
        shape = tuple(d.dim_param or d.dim_value for d in t.shape.dim)
        specs.append(TensorSpec(out.name, _ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), shape))
    return specs


def export_bundle(
    ckpt: str | os.PathLike,
    out: str | os.PathLike,
    attention: str = "fused",
    atol: float = FLOAT32_ATOL,
    cases: list[tuple[int, int]] | None = None,
    overwrite: bool = False,
    kv_cache: bool = False,
) -> ExportResult:
    """Export the checkpoint at `ckpt` to a bundle at `out`.

    `kv_cache` (decoders): one graph for the prompt and each generated token, with past and
    present keys/values (see export.onnx.trace_onnx); its parity gate runs prompts then decode
    steps (export.cache_parity), and `cases` are then (batch, prompt length, steps).
    A seq2seq checkpoint always exports as an encoder graph and a cached decoder graph
    (export.seq2seq), `cases` then being (batch, source length, decoder steps).

    The bundle is written only when the graph passes onnx.checker, holds the expected attention
    form, and matches PyTorch within `atol`; otherwise nothing is left at `out` and the error
    (ParityFailure carries the report) says why.
    """
    if checkpoint.read_config(ckpt).arch == "seq2seq":  # always an encoder graph and a cached decoder graph
        from .seq2seq import export_seq2seq_bundle

        return export_seq2seq_bundle(ckpt, out, attention, atol, cases, overwrite)
    model = checkpoint.load(ckpt)
    ckpt = Path(ckpt)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        export_onnx(model, tmp / MODEL_FILE, attention, kv_cache)
        graph = onnx.load(str(tmp / MODEL_FILE))
        attention_record = check_graph(graph, attention, model.cfg.n_layers)
        tokenizer = checkpoint.load_tokenizer(ckpt)
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER_FILE)
        cfg = model.cfg
        axes = {"batch": {"min": 1}} if cfg.image_size else {"batch": {"min": 1}, "seq": {"min": 1, "max": cfg.max_len}}
        if kv_cache:
            axes.update(past={"min": 0, "max": cfg.max_len - 1}, total={"min": 1, "max": cfg.max_len})
        manifest = Manifest(
            inputs=cache_input_specs(model) if kv_cache else input_specs(model),
            outputs=output_specs(graph),
            axes=axes,
            opset=ATTENTION_OPSETS[attention],
            model={"config": cfg.to_dict(), "task": cfg.task, "labels": cfg.labels,
                   "parameters": model.num_parameters(),
                   "checkpoint": {"name": ckpt.name, "sha256": sha256_file(ckpt / checkpoint.WEIGHTS_FILE)},
                   **({"cache": cache_record(model)} if kv_cache else {})},
            attention=attention_record,
            tools=tool_versions(),
        )
        write_manifest(tmp, manifest)
        bundle = runtime.load(tmp)
        if kv_cache:
            report = check_cache_parity(model, bundle, cases, atol, GATE_SEED)
        else:
            report = check_parity(model, bundle, manifest.inputs, manifest.outputs, cases, atol, GATE_SEED)
        manifest.parity = report.to_json()
        write_manifest(tmp, manifest)
        if not report.passed:
            failure = ParityFailure(report, f"export of {ckpt}")
            if not kv_cache:  # name the first node that diverges, and its module
                from .debug import explain_parity_failure

                failure.diagnosis = explain_parity_failure(tmp, model, atol)
            raise failure
    return ExportResult(Path(out), manifest, report)


def bundle_parity(
    bundle_path: str | os.PathLike,
    reference: str | os.PathLike,
    atol: float | None = None,
    cases: list[tuple[int, int]] | None = None,
    seed: int = 0,
) -> ParityReport:
    """`edgeformer parity`: check a bundle against its PyTorch checkpoint on fresh random inputs.

    The tolerance is the bundle's recorded one (float32: 1e-4) unless `atol` is given.
    """
    bundle = runtime.load(bundle_path)
    model = checkpoint.load(reference)
    if model.cfg.to_dict() != bundle.manifest.config:
        raise runtime.EdgeformerError(f"checkpoint {reference} has a different model config from bundle {bundle_path}")
    if bundle.manifest.quantization:
        raise runtime.EdgeformerError(f"{bundle_path} is quantized; its parity is checked against its budget "
                                      "(edgeformer.quantize.budget_parity), not a float32 tolerance")
    recorded = (bundle.manifest.parity or {}).get("atol", FLOAT32_ATOL)
    if model.cfg.arch == "seq2seq":
        from edgeformer.runtime.generate import encoder_runner

        from .seq2seq import check_seq2seq_parity

        return check_seq2seq_parity(model, encoder_runner(bundle), bundle, cases,
                                    atol if atol is not None else recorded, seed)
    if "cache" in bundle.manifest.model:
        return check_cache_parity(model, bundle, cases, atol if atol is not None else recorded, seed)
    return check_parity(model, bundle, bundle.manifest.inputs, bundle.manifest.outputs, cases,
                        atol if atol is not None else recorded, seed)
