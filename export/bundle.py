"""`edgeformer export`: the one export pipeline, for every bundle kind (export.kinds).

    checkpoint ─► spec of its kind ─► trace + passes + save each graph ─► onnx.checker and the
    attention count ─► tokenizer ─► manifest ─► runtime.load ─► the kind's parity gate ─► test
    vectors (runtime/vectors.py) ─► manifest (hashing them too) ─► rename

Everything is written into a temporary directory that is renamed into place only when the gate
passes, so a failed export leaves nothing at `out`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import onnx

from edgeformer import runtime
from edgeformer.modeling import checkpoint
from edgeformer.modeling.config import ModelConfig
from edgeformer.modeling.models.conformer_stream import StreamGeometry
from edgeformer.runtime.artifacts import atomic_directory, check_output_dir, package_versions, sha256_file
from edgeformer.runtime.bundle import (CACHED_DECODER, SEQ2SEQ, TOKENIZER_FILE, AttentionRecord, Manifest,
                                       ModelRecord, TensorSpec, write_manifest)
from edgeformer.runtime.vectors import write_vectors

from .checks import check_graph
from .kinds import kind_for
from .long_input import check_subquadratic
from .onnx import ATTENTION_OPSETS, save, trace
from .parity import FLOAT32_ATOL, GATE_SEED, ParityFailure, ParityReport
from .specs import ExportRequest, ExportSpec, check_attention_mode

_ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.INT64: "int64"}


@dataclass
class ExportResult:
    path: Path
    manifest: Manifest
    report: ParityReport


def tool_versions() -> dict[str, str]:
    return package_versions(("edgeformer", "torch", "onnx", "onnxscript", "onnxruntime"))


def output_specs(graph: onnx.ModelProto) -> list[TensorSpec]:
    specs = []
    for out in graph.graph.output:
        t = out.type.tensor_type
        shape = tuple(d.dim_param or d.dim_value for d in t.shape.dim)
        specs.append(TensorSpec(out.name, _ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), shape))
    return specs


def gate(model, bundle: runtime.Model, cases=None, atol: float = FLOAT32_ATOL, seed: int = 0) -> ParityReport:
    """The parity check of the bundle's kind: PyTorch `model` against the loaded `bundle`."""
    stream = bundle.manifest.model.stream
    geometry = StreamGeometry(stream.chunk_frames, stream.left_chunks) if stream is not None else None
    return kind_for(model.cfg, bundle.manifest.kind == CACHED_DECODER, geometry).gate(model, bundle, cases, atol, seed)


def export_bundle(
    ckpt: str | os.PathLike,
    out: str | os.PathLike,
    attention: str = "fused",
    atol: float = FLOAT32_ATOL,
    cases: list[tuple[int, int]] | None = None,
    overwrite: bool = False,
    kv_cache: bool = False,
    stream: StreamGeometry | None = None,
) -> ExportResult:
    """Export the checkpoint at `ckpt` to a bundle at `out`.

    `kv_cache` (decoders): one graph for the prompt and each generated token, with past and
    present keys/values; its parity gate runs prompts then decode steps (export.cache_parity), and
    `cases` are then (batch, prompt length, steps). A seq2seq checkpoint always exports as an
    encoder graph and a cached decoder graph, `cases` then being (batch, source length, decoder steps).
    `stream` (a Conformer trained to stream): one step of a stream cut as it says (export.speech_stream),
    `cases` then being (samples, piece size).

    The bundle is written only when every graph passes onnx.checker, holds the expected attention
    form, and matches PyTorch within `atol`; otherwise nothing is left at `out` and the error
    (ParityFailure carries the report) says why.
    """
    check_attention_mode(attention)
    check_output_dir(out, overwrite, sources=(ckpt,))  # --out over the checkpoint would destroy it
    model = checkpoint.load(ckpt).eval()
    ckpt = Path(ckpt)
    tokenizer = checkpoint.load_tokenizer(ckpt)
    kind = kind_for(model.cfg, kv_cache, stream)
    spec = kind.spec(model, tokenizer, ExportRequest(kv_cache, stream))
    if spec.kind in (CACHED_DECODER, SEQ2SEQ):
        record_turn_tokens(ckpt, spec.cache, model.cfg.vocab_size)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        cfg = model.cfg
        source = {"name": ckpt.name, "sha256": sha256_file(ckpt / checkpoint.WEIGHTS_FILE)}
        trained_on = checkpoint.recorded_task(ckpt)
        if trained_on is not None:  # the built-in task, which quantize measures the bundle on
            source["task"] = trained_on
        record = ModelRecord(cfg.to_dict(), cfg.task, cfg.labels, model.num_parameters(), source, spec.cache, spec.stream)
        manifest = write_graphs(spec, tmp, attention, record)
        if cfg.attention.kind != "full" and attention == "fused" and spec.kind != CACHED_DECODER:
            check_subquadratic(onnx.load(str(tmp / spec.graphs[0].file)))  # the memory saving is in the graph
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER_FILE)
        write_manifest(tmp, manifest)
        loaded = runtime.load(tmp)
        report = kind.gate(model, loaded, cases, atol, GATE_SEED)
        manifest.parity = report.to_json()
        if report.passed:  # the answers this bundle gives, for any runtime to check itself against
            write_vectors(tmp, loaded)
        write_manifest(tmp, manifest)
        if not report.passed:
            failure = ParityFailure(report, f"export of {ckpt}")
            if kind.diagnosable:  # name the first node that diverges, and its module
                from .debug import explain_parity_failure

                failure.diagnosis = explain_parity_failure(tmp, model, atol)
            raise failure
    return ExportResult(Path(out), manifest, report)


def record_turn_tokens(ckpt: Path, cache, vocab_size: int) -> None:
    """An imported checkpoint's end-of-turn tokens, bos token and chat template (its source.json) into the
    cache record, so that the runtime stops where the model ends a turn and can render its chat template."""
    path = ckpt / checkpoint.SOURCE_FILE
    try:
        source = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        raise runtime.EdgeformerError(f"{path} is not a valid JSON object; re-import the checkpoint") from None
    special = source.get("special_tokens") or {}
    ends = source.get("end_ids") or [special[k] for k in ("eos", "eot", "eom") if special.get(k) is not None]
    ends = [int(i) for i in dict.fromkeys(ends) if 0 <= int(i) < vocab_size]
    if ends:
        cache.end_ids = ends
    if special.get("bos") is not None:
        cache.bos_id = int(special["bos"])
    if source.get("chat_template"):
        cache.chat_template = str(source["chat_template"])


def write_graphs(spec: ExportSpec, directory: Path, attention: str, model: ModelRecord) -> Manifest:
    """Trace, pass and save each graph of `spec`, check it, and describe them all in a manifest."""
    main, records, outputs = spec.graphs[0], {}, {}
    for graph in spec.graphs:
        save(trace(graph, attention), directory / graph.file, attention)
        proto = onnx.load(str(directory / graph.file))
        records[graph.file] = check_graph(proto, attention, graph.attention_count)
        outputs[graph.file] = output_specs(proto)
    attention_record = AttentionRecord.from_json(records[main.file])
    cache = spec.cache
    for graph in spec.graphs[1:]:  # a second graph is declared where the manifest names it (seq2seq: the cache record)
        attention_record.encoder = AttentionRecord.from_json(records[graph.file])
        cache.encoder_inputs, cache.encoder_outputs = graph.inputs, outputs[graph.file]
    axes = {}
    for graph in spec.graphs:
        axes.update({k: v for k, v in graph.manifest_axes().items() if k not in axes})
    return Manifest(inputs=main.inputs, outputs=outputs[main.file], axes={k: axes[k] for k in main.axes if k in axes},
                    opset=ATTENTION_OPSETS[attention], model=model, attention=attention_record,
                    tools=tool_versions(), kind=spec.kind)


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
    if model.cfg != ModelConfig.from_dict(bundle.manifest.config):  # older manifests lack newer fields: their defaults
        raise runtime.EdgeformerError(f"checkpoint {reference} has a different model config from bundle {bundle_path}")
    if bundle.manifest.quantization:
        raise runtime.EdgeformerError(f"{bundle_path} is quantized; its parity is checked against its budget "
                                      "(edgeformer.quantize.budget_parity), not a float32 tolerance")
    parity = bundle.manifest.parity
    recorded = parity.atol if parity is not None and parity.atol is not None else FLOAT32_ATOL
    return gate(model, bundle, cases, atol if atol is not None else recorded, seed)
