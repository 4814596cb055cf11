"""`edgeformer quantize`: a float32 bundle -> a quantized bundle that keeps the accuracy budget.

The quantized graph is measured against the float32 bundle on real text (quantize/evaluate.py).
With a budget (`max_drop`), a graph that loses too much gets its most sensitive MatMuls back in
float, one at a time, until the budget holds; a budget that cannot be met writes nothing.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx

from edgeformer import runtime
from edgeformer.runtime.artifacts import atomic_directory
from edgeformer.runtime.bench import bench_model
from edgeformer.runtime.bundle import MODEL_FILE, TOKENIZER_FILE, Manifest, write_manifest
from edgeformer.runtime.model import create_session

from .evaluate import EvalSet, Fidelity, default_eval_texts, evaluate
from .recipes import QuantizeError, RecipeOptions, apply_recipe, quantizable_matmuls

SENSITIVITY_TEXTS = 32  # texts used to rank nodes; the final check uses the whole evaluation set


@dataclass
class QuantizeResult:
    path: Path | None
    recipe: str
    fidelity: Fidelity
    kept_float: list[str] = field(default_factory=list)
    size_ratio: float = 0.0
    float_ms: float = 0.0
    quant_ms: float = 0.0
    max_drop: float | None = None

    @property
    def passed(self) -> bool:
        return self.max_drop is None or self.fidelity.drop <= self.max_drop

    def to_json(self) -> dict:
        return {"recipe": self.recipe, "fidelity": self.fidelity.to_json(), "max_drop": self.max_drop,
                "kept_float": self.kept_float, "size_ratio": self.size_ratio,
                "latency_ms": {"float32": self.float_ms, "quantized": self.quant_ms}, "passed": self.passed}


class BudgetError(QuantizeError):
    def __init__(self, result: QuantizeResult):
        self.result = result
        f = result.fidelity
        super().__init__(f"the {result.recipe} bundle misses the budget: {f.metric} drop {f.drop:.4g} > {result.max_drop:g} "
                         f"even with {len(result.kept_float)} MatMuls kept in float; nothing was written")


def _runner(path: Path) -> Callable:
    session, _ = create_session(path)
    return lambda feeds: session.run(None, dict(feeds))


def _quantize_and_measure(recipe: str, src: Path, dst: Path, opt: RecipeOptions, ref: runtime.Model, data: EvalSet) -> Fidelity:
    apply_recipe(recipe, src, dst, opt)
    return evaluate(ref, _runner(dst), data)


def budget_parity(bundle_path: str | os.PathLike, reference_config: dict,
                  reference_run: Callable[[dict], dict], data: EvalSet | None = None) -> tuple[Fidelity, float, bool]:
    """A quantized bundle against a float32 reference (PyTorch, run by the caller) on real text.

    Passes when the task metric's drop is within the budget recorded at quantization, or, with no
    budget, within the drop then measured against the float32 bundle plus 10% for the change of
    reference. Returns (fidelity, limit, passed).
    """
    bundle = runtime.load(bundle_path)
    if not bundle.manifest.quantization:
        raise QuantizeError(f"{bundle_path} is not quantized; check it with the float32 parity gate")
    if reference_config != bundle.manifest.config:
        raise QuantizeError(f"the reference has a different model config from bundle {bundle_path}")
    recorded = bundle.manifest.parity or {}
    limit = recorded.get("max_drop")
    if limit is None:
        limit = max(recorded.get("fidelity", {}).get("drop", 0.0) * 1.1, 1e-6)
    session = bundle.session
    fid = evaluate(bundle, lambda feeds: session.run(None, dict(feeds)), data or default_eval_texts(),
                   reference_run=reference_run)
    return fid, limit, fid.drop <= limit


def rank_sensitivity(recipe: str, src: Path, work: Path, opt: RecipeOptions, ref: runtime.Model, data: EvalSet,
                     nodes: list[str]) -> list[tuple[str, float]]:
    """(node, drop with that node alone kept in float), most helpful first."""
    subset = EvalSet(data.texts[:SENSITIVITY_TEXTS], data.labels[:SENSITIVITY_TEXTS] if data.labels else None)
    scores = []
    for node in nodes:
        trial = RecipeOptions(opt.block_size, opt.symmetric, opt.exclude + [node])
        scores.append((node, _quantize_and_measure(recipe, src, work / "trial.onnx", trial, ref, subset).drop))
    return sorted(scores, key=lambda s: s[1])


def quantize_bundle(
    src: str | os.PathLike,
    out: str | os.PathLike,
    recipe: str,
    max_drop: float | None = None,
    data: EvalSet | None = None,
    options: RecipeOptions | None = None,
    overwrite: bool = False,
    bench_seconds: float = 1.0,
    progress: Callable[[str], None] = lambda msg: None,
) -> QuantizeResult:
    ref = runtime.load(src)
    if ref.manifest.quantization:
        raise QuantizeError(f"{src} is already quantized ({ref.manifest.quantization.get('recipe')}); "
                            "quantize the float32 bundle instead")
    if ref.bundle.tokenizer_path is None:
        raise QuantizeError(f"{src} has no tokenizer.json; fidelity is measured on text")
    data = data or default_eval_texts()
    if not data.texts:
        raise QuantizeError("the evaluation set is empty; expected at least one text")
    opt = options or RecipeOptions()
    src_model = ref.bundle.model_path
    with atomic_directory(out, overwrite=overwrite) as tmp:
        dst = tmp / MODEL_FILE
        fid = _quantize_and_measure(recipe, src_model, dst, opt, ref, data)
        progress(f"{recipe}: {fid.metric} {fid.quant_metric:.5g} (float32 {fid.float_metric:.5g}), drop {fid.drop:.4g}")
        kept: list[str] = []
        if max_drop is not None and fid.drop > max_drop:
            candidates = [n for n in quantizable_matmuls(onnx.load(str(src_model))) if n not in opt.exclude]
            progress(f"over the budget {max_drop:g}: ranking {len(candidates)} MatMuls by sensitivity")
            work = tmp / ".work"
            work.mkdir()
            ranking = rank_sensitivity(recipe, src_model, work, opt, ref, data, candidates)
            for node, _ in ranking:
                kept.append(node)
                fid = _quantize_and_measure(recipe, src_model, dst, RecipeOptions(opt.block_size, opt.symmetric,
                                                                                opt.exclude + kept), ref, data)
                progress(f"  kept {node} in float: drop {fid.drop:.4g}")
                if fid.drop <= max_drop:
                    break
            shutil.rmtree(work)
        result = QuantizeResult(Path(out), recipe, fid, kept, max_drop=max_drop)
        result.size_ratio = dst.stat().st_size / src_model.stat().st_size
        if not result.passed:
            result.path = None
            raise BudgetError(result)
        shutil.copyfile(ref.bundle.tokenizer_path, tmp / TOKENIZER_FILE)
        m = ref.manifest
        manifest = Manifest(inputs=m.inputs, outputs=m.outputs, axes=m.axes, opset=m.opset, model=m.model,
                            attention=m.attention, tools=m.tools)
        manifest.quantization = {"recipe": recipe, "block_size": opt.block_size if recipe == "int4" else None,
                                 "symmetric": opt.symmetric if recipe == "int4" else None,
                                 "kept_float": kept + list(opt.exclude), "source_bundle": Path(src).name}
        manifest.parity = {"passed": True, "kind": "budget", "max_drop": max_drop, "fidelity": fid.to_json(),
                           "eval_texts": len(data.texts)}
        write_manifest(tmp, manifest)
        seq = min(128, m.axes.get("seq", {}).get("max", 128))
        b_f = bench_model(ref, 1, seq, min_seconds=bench_seconds)
        b_q = bench_model(runtime.load(tmp), 1, seq, min_seconds=bench_seconds)
        result.float_ms, result.quant_ms = b_f.runtime.median_ms, b_q.runtime.median_ms
    return result
