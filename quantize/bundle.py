"""`edgeformer quantize`: a float32 bundle -> a quantized bundle that keeps the accuracy budget.

The int8 recipes first smooth activation outliers into the weights (quantize/smooth.py), with the
strength that keeps the calibration set's outputs closest to float32; int8-dynamic then keeps the
one or two FFN output projections that cost the calibration texts the most in float when they lose
more than 0.005 (quantize/sensitive.py). The quantized graph is then
measured against the float32 bundle on real text (quantize/evaluate.py). With a budget
(`max_drop`), a graph that loses too much gets its most sensitive MatMuls back in float, one at a
time, until the budget holds; a budget that cannot be met writes nothing.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from edgeformer import runtime
from edgeformer.runtime.artifacts import atomic_directory, check_output_dir
from edgeformer.runtime.bench import bench_model
from edgeformer.runtime.bundle import MODEL_FILE, TOKENIZER_FILE, ParityRecord, write_manifest
from edgeformer.runtime.cpu import describe
from edgeformer.runtime.graph_files import graph_bytes
from edgeformer.runtime.kinds import reads_arrays
from edgeformer.runtime.vectors import write_vectors

from .budget import keep_within_budget
from .calibration import calibration_batches, calibration_texts, real_positions
from .debug import explain_budget_failure
from .evaluate import EvaluationData, Fidelity, default_eval_texts, evaluate, quantize_and_measure, session_runner
from .evaluation import cosine
from .generation import generation_inputs, quantize_generation_bundle
from .kinds import quantize_kind
from .media import ArrayEvalSet, media_latency_ms
from .recipes import (QuantizeError, RecipeOptions, activation_fed_matmuls, apply_recipe, check_recipe,
                      quantizable_matmuls)
from .record import quantization_record, quantized_manifest
from .result import BudgetError, QuantizeResult
from .sensitive import check_sensitive_options, keep_sensitive_in_float
from .smooth import ALPHAS, activation_absmax, smooth_matmul_inputs

__all__ = ["BudgetError", "QuantizeResult", "budget_parity", "quantize_bundle"]

SENSITIVITY_TEXTS = 32  # texts used to rank nodes; the final check uses the whole evaluation set
SMOOTHED = ("int8-dynamic", "int8-static")  # recipes that quantize activations, so gain from smoothing


def budget_parity(bundle_path: str | os.PathLike, reference_config: dict,
                  reference_run: Callable[[dict], dict], data: EvaluationData | None = None) -> tuple[Fidelity, float, bool]:
    """A quantized bundle against a float32 reference (PyTorch, run by the caller) on real text.

    Passes when the task metric's drop is within the budget recorded at quantization, or, with no
    budget, within the drop then measured against the float32 bundle plus 10% for the change of
    reference. Returns (fidelity, limit, passed).
    """
    bundle = runtime.load(bundle_path)
    if not bundle.manifest.quantization:
        raise QuantizeError(f"{bundle_path} is not quantized; check it with the float32 parity gate")
    if any(reference_config.get(k) != v for k, v in bundle.manifest.config.items()):  # older bundles lack newer fields
        raise QuantizeError(f"the reference has a different model config from bundle {bundle_path}")
    recorded = bundle.manifest.parity
    limit = recorded.max_drop if recorded is not None else None
    if limit is None:
        drop = (recorded.fidelity or {}).get("drop", 0.0) if recorded is not None else 0.0
        limit = max(drop * 1.1, 1e-6)
    fid = evaluate(bundle, lambda feeds: bundle.run(None, dict(feeds)), data or default_eval_texts(),
                   reference_run=reference_run)
    return fid, limit, fid.drop <= limit


def choose_smoothing(recipe: str, src: Path, work: Path, opt: RecipeOptions, batches: list,
                     alpha: float | str | None, progress: Callable[[str], None]
                     ) -> tuple[Path, float | None, dict[str, float]]:
    """The graph to quantize: `src` smoothed with `alpha`, or with the best of ALPHAS ("auto") or none.

    "auto" quantizes the graph once per candidate (and once unsmoothed) and keeps the one whose
    outputs on the calibration set stay closest to float32: the evaluation set is never used for it.
    Returns the graph, its alpha and each candidate's calibration output cosine ("off" for none).
    """
    if recipe not in SMOOTHED or alpha is None:
        return src, None, {}
    model = onnx.load(str(src))
    absmax = activation_absmax(model, batches)
    candidates = [None, *ALPHAS] if alpha == "auto" else [float(alpha)]
    reference = []  # the float32 outputs on the calibration set: computed once, compared with every trial
    if len(candidates) > 1:
        run_float = session_runner(src)
        reference = [run_float(feeds) for feeds in batches]
    best: tuple[float, float | None, Path] | None = None
    trials: dict[str, float] = {}
    for a in candidates:
        path = src
        if a is not None:
            smoothed = onnx.ModelProto()
            smoothed.CopyFrom(model)
            smooth_matmul_inputs(smoothed, absmax, a)
            path = work / f"smoothed-{a}.onnx"
            onnx.save(smoothed, str(path))
        if len(candidates) == 1:
            return path, a, trials
        apply_recipe(recipe, path, work / "trial.onnx", opt)
        score = output_cosine(reference, session_runner(work / "trial.onnx"), batches)
        trials["off" if a is None else f"{a:g}"] = score
        progress(f"  smoothing {'off' if a is None else f'alpha {a:g}'}: calibration output cosine {score:.5f}")
        if best is None or score > best[0]:
            best = (score, a, path)
    return best[2], best[1], trials


def output_cosine(reference: list, candidate: Callable, batches: list) -> float:
    """Mean cosine similarity of every output vector (per real token where outputs are per token).

    `reference` holds the float32 outputs of each batch; `candidate` runs the quantized graph.
    """
    scores = []
    for feeds, ref_outputs in zip(batches, reference):
        real = real_positions(feeds)
        for f, q in zip(ref_outputs, candidate(feeds)):
            f, q = np.asarray(f, np.float64), np.asarray(q, np.float64)
            if f.ndim < 2:
                continue
            vec_f, vec_q = (f[real], q[real]) if real is not None and f.shape[:2] == real.shape else (f, q)
            scores.append(cosine(vec_f.reshape(-1, f.shape[-1]), vec_q.reshape(-1, f.shape[-1])))
    return float(np.concatenate(scores).mean())


def quantize_bundle(
    src: str | os.PathLike,
    out: str | os.PathLike,
    recipe: str,
    max_drop: float | None = None,
    data: EvaluationData | None = None,
    options: RecipeOptions | None = None,
    overwrite: bool = False,
    bench_seconds: float = 1.0,
    progress: Callable[[str], None] = lambda msg: None,
    calib_data: str | os.PathLike | None = None,
    smooth_alpha: float | str | None = "auto",
    metric: str | None = None,
) -> QuantizeResult:
    """Quantize the float32 bundle `src` into `out` with `recipe`, measured on `data` (default: Python's docs).

    `calib_data` (.txt, .jsonl or .npz) is what int8-static calibrates on and what smoothing
    observes (default: Python's docs, other paragraphs than the evaluation set). `smooth_alpha`:
    "auto", a strength in (0, 1], or None for no smoothing (int8 recipes only).
    Generation bundles (a cached decoder, seq2seq) go to quantize/generation.py: `data` and
    `calib_data` may then be GenerationData, and `metric` picks the budget ("perplexity", the
    default, or "exact-match" for seq2seq); smoothing does not apply to them.
    """
    check_output_dir(out, overwrite, sources=(src,))  # before minutes of quantization
    ref = runtime.load(src)
    if ref.manifest.deploy:
        raise QuantizeError(f"{src} is a {ref.manifest.deploy.target} deployment; quantize the bundle it was "
                            "made from, then deploy the quantized bundle")
    if ref.manifest.quantization:
        raise QuantizeError(f"{src} is already quantized ({ref.manifest.quantization.recipe}); "
                            "quantize the float32 bundle instead")
    if ref.manifest.attention.kind == "packed":  # its projections sit inside com.microsoft.Attention, out of reach
        raise QuantizeError(f"{src} has the packed attention graph, whose QKV projections the recipes cannot reach; "
                            "quantize a bundle exported with --attention fused (int8 is faster than packed float32)")
    media = reads_arrays(ref.manifest)  # images and audio: measured on arrays of their task (quantize/media.py)
    if media and not isinstance(data, ArrayEvalSet):
        raise QuantizeError(f"{src} reads {ref.manifest.modality} input; "
                            "give its evaluation set as arrays (quantize.media.ArrayEvalSet)")
    if not media and ref.bundle.tokenizer_path is None:
        raise QuantizeError(f"{src} has no tokenizer.json; fidelity is measured on text")
    if quantize_kind(ref.manifest).generation:
        check_recipe(recipe)
        if isinstance(smooth_alpha, (int, float)):
            raise QuantizeError(f"smoothing (alpha {smooth_alpha:g}) covers single-graph bundles; a generation bundle "
                                "is quantized unsmoothed (leave --smooth-alpha out)")
        data, calib = generation_inputs(ref, recipe, data, calib_data)
        return quantize_generation_bundle(ref, Path(src), Path(out), recipe, max_drop, data,
                                          dataclasses.replace(options or RecipeOptions()), overwrite, progress, calib,
                                          metric or "perplexity", bench_seconds)
    if metric is not None and not (metric == "perplexity" and ref.manifest.model.task == "causal-lm"):
        raise QuantizeError(f"budget metric {metric} does not exist for a {ref.manifest.model.task} bundle; "
                            "its budget is on its own task metric (leave the metric out)")
    data = data or default_eval_texts()
    if not data.rows:
        raise QuantizeError("the evaluation set is empty; expected at least one text")
    if isinstance(smooth_alpha, (int, float)) and not 0 < smooth_alpha <= 1:
        raise QuantizeError(f"smoothing alpha {smooth_alpha:g} is out of range; expected a number in (0, 1], auto or off")
    opt = dataclasses.replace(options or RecipeOptions())
    check_recipe(recipe)  # before any work
    check_sensitive_options(opt)
    batches = None
    if recipe in SMOOTHED and (recipe == "int8-static" or smooth_alpha is not None):
        if media and not data.calibration:
            raise QuantizeError(f"{recipe} observes calibration inputs; the evaluation set has none")
        batches = data.calibration if media else calibration_batches(ref, calib_data)
        opt.calibration_batches = batches
    if recipe == "int8-static":
        ffn_out = [n for n in activation_fed_matmuls(onnx.load(str(ref.bundle.model_path))) if n not in opt.exclude]
        opt.exclude = opt.exclude + ffn_out
        progress(f"int8-static keeps {len(ffn_out)} FFN output MatMuls in float (their inputs follow an activation function)")
    with atomic_directory(out, overwrite=overwrite) as tmp:
        dst = tmp / MODEL_FILE
        work = tmp / ".work"
        work.mkdir()
        src_model, alpha, trials = choose_smoothing(recipe, ref.bundle.model_path, work, opt, batches, smooth_alpha, progress)
        if recipe == "int8-dynamic" and opt.sensitive_float and not media:  # decided on calibration texts only
            opt.exclude = opt.exclude + keep_sensitive_in_float(recipe, src_model, work, opt, ref,
                                                                calibration_texts(ref, calib_data), progress, data)
        fid = quantize_and_measure(recipe, src_model, dst, opt, ref, data)
        progress(f"{recipe}: {fid.metric} {fid.quant_metric:.5g} (float32 {fid.float_metric:.5g}), drop {fid.drop:.4g}")
        with_kept = lambda kept: dataclasses.replace(opt, exclude=opt.exclude + list(kept))  # noqa: E731
        subset = data.subset(SENSITIVITY_TEXTS)
        fid, kept = keep_within_budget(
            fid, max_drop, lambda: [n for n in quantizable_matmuls(onnx.load(str(src_model))) if n not in opt.exclude],
            lambda node: quantize_and_measure(recipe, src_model, work / "trial.onnx", with_kept([node]), ref, subset).drop,
            lambda kept: quantize_and_measure(recipe, src_model, dst, with_kept(kept), ref, data), progress)
        shutil.rmtree(work)
        result = QuantizeResult(Path(out), recipe, fid, list(opt.exclude) + kept, max_drop=max_drop, smooth_alpha=alpha,
                                smoothing_trials=trials)
        result.size_ratio = graph_bytes(dst) / graph_bytes(ref.bundle.model_path)
        if not result.passed:
            result.path = None
            failure = BudgetError(result)
            failure.diagnosis = explain_budget_failure(dst, src, batches)
            raise failure
        if ref.bundle.tokenizer_path is not None:
            shutil.copyfile(ref.bundle.tokenizer_path, tmp / TOKENIZER_FILE)
        m = ref.manifest
        calibration = ({"method": opt.calibration if recipe == "int8-static" else None,
                        "rows": sum(len(next(iter(b.values()))) for b in batches),
                        "data": Path(calib_data).name if calib_data else "built-in"} if batches else None)
        manifest = quantized_manifest(m, quantization_record(recipe, opt, result.kept_float, Path(src).name, alpha,
                                                             calibration))
        manifest.parity = ParityRecord(passed=True, kind="budget", max_drop=max_drop, fidelity=fid.to_json(),
                                       eval_texts=data.rows)
        write_manifest(tmp, manifest)
        seq = min(128, m.axes.get("seq", {}).get("max", 128))
        if media:  # batch 1: the first evaluation input
            row = data.latency_feeds()
            result.float_ms = media_latency_ms(ref, row, bench_seconds)
            result.quant_ms = media_latency_ms(runtime.load(tmp), row, bench_seconds)
            seq = int(row["lengths"][0]) if "lengths" in row else None
        else:
            b_f = bench_model(ref, 1, seq, min_seconds=bench_seconds)
            b_q = bench_model(runtime.load(tmp), 1, seq, min_seconds=bench_seconds)
            result.float_ms, result.quant_ms = b_f.runtime.median_ms, b_q.runtime.median_ms
        # What the recipe costs and buys, measured here, travels with the bundle.
        manifest.quantization.measured = {"size_ratio": result.size_ratio, "batch": 1, "seq": seq,
                                             "float32_ms": result.float_ms, "quantized_ms": result.quant_ms,
                                             # fidelity and latency hold for this CPU class (runtime/cpu.py)
                                             "cpu": describe()}
        write_vectors(tmp, runtime.load(tmp))  # the quantized bundle's own answers, covered by the final hashes
        write_manifest(tmp, manifest)
    return result
