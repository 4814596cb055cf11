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

from .checks import check_graph
from .onnx import ATTENTION_OPSETS, export_onnx
from .parity import FLOAT32_ATOL, ParityFailure, ParityReport, check_parity

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
) -> ExportResult:
    """Export the checkpoint at `ckpt` to a bundle at `out`.

    The bundle is written only when the graph passes onnx.checker, holds the expected attention
    form, and matches PyTorch within `atol`; otherwise nothing is left at `out` and the error
    (ParityFailure carries the report) says why.
    """
    model = checkpoint.load(ckpt)
    ckpt = Path(ckpt)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        export_onnx(model, tmp / MODEL_FILE, attention)
        graph = onnx.load(str(tmp / MODEL_FILE))
        attention_record = check_graph(graph, attention, model.cfg.n_layers)
        tokenizer = checkpoint.load_tokenizer(ckpt)
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER_FILE)
        cfg = model.cfg
        manifest = Manifest(
            inputs=input_specs(model),
            outputs=output_specs(graph),
            axes={"batch": {"min": 1}} if cfg.image_size else {"batch": {"min": 1}, "seq": {"min": 1, "max": cfg.max_len}},
            opset=ATTENTION_OPSETS[attention],
            model={"config": cfg.to_dict(), "task": cfg.task, "labels": cfg.labels,
                   "parameters": model.num_parameters(),
                   "checkpoint": {"name": ckpt.name, "sha256": sha256_file(ckpt / checkpoint.WEIGHTS_FILE)}},
            attention=attention_record,
            tools=tool_versions(),
        )
        write_manifest(tmp, manifest)
        bundle = runtime.load(tmp)
        report = check_parity(model, bundle, manifest.inputs, manifest.outputs, cases, atol)
        manifest.parity = report.to_json()
        write_manifest(tmp, manifest)
        if not report.passed:
            raise ParityFailure(report, f"export of {ckpt}")
    return ExportResult(Path(out), manifest, report)


def bundle_parity(
    bundle_path: str | os.PathLike,
    reference: str | os.PathLike,
    atol: float | None = None,
    cases: list[tuple[int, int]] | None = None,
    seed: int = 1,
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
    return check_parity(model, bundle, bundle.manifest.inputs, bundle.manifest.outputs, cases,
                        atol if atol is not None else recorded, seed)
