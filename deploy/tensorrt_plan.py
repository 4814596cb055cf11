"""The planning half of the `tensorrt` and `jetson` deploy targets: everything decided before TensorRT is imported.

From the bundle's manifest (and model.onnx, read with onnx) and the deploy options: the optimization
profile, the precision plan, what is refused, the shapes the build's check runs, its tolerances and
the comparison of outputs, and the folder's README with its trtexec command. Nothing here imports
tensorrt or touches a GPU; deploy/tensorrt.py builds and checks the engine from these plans.

Decisions, and why:
- One optimization profile from the manifest's axes. batch: min = the axis minimum, opt = 1 (edge
  serving is latency-bound, one request at a time), max = the axis maximum or 32 (runtime.text's
  default batch for embed/classify). seq (and any other axis): min and max = the axis range (so every
  input the bundle accepted is still accepted), opt = min(128, max): TensorRT picks kernels for opt,
  and 128 tokens is the length this project benchmarks. `--profile AXIS=MIN:OPT:MAX` overrides an
  axis within the bundle's range. The deployed manifest's axes become the profile's ranges, so the
  runtime refuses an out-of-profile input with its usual one-line InputError.
- fp32: no TF32 (TensorRT's default on Ampere and later rounds matmul inputs to 10 bits).
- fp16 from a float32 bundle: a weakly typed network with the FP16 flag, and LayerNormalization and
  Softmax layers pinned to float32 (OBEY_PRECISION_CONSTRAINTS): LayerNorm's sum of squares and
  softmax's exponentials are where fp16 overflows, as TensorRT's own builder warns. This works on
  TensorRT 10.3 (JetPack 6.1/6.2). An `fp16`-recipe bundle (edgeformer quantize --recipe fp16) already
  holds fp16 weights with LayerNorm/Softmax in float32, so it is built strongly typed, as its types say.
- int8 only from an `int8-static` bundle (QDQ, symmetric, zero points 0): explicit quantization in a
  STRONGLY_TYPED network, no INT8 flag and no calibrator. Float layers between the Q/DQ pairs run in the
  graph's type (float32). A float bundle, or an int8-dynamic/int4 one (MatMulInteger, MatMulNBits), is
  refused; an int8-static bundle is refused for fp16/fp32 (deploy its float32 source instead).
- Key/value-cache decoders and seq2seq bundles are refused (deploy/kinds.py): generation (runtime.generate) keeps the
  cache in onnxruntime's buffers between steps and runs a seq2seq encoder as a second graph; an engine
  would need profiles for past/total, a second engine and a device-side generation loop. Encoders,
  classifiers, plain decoders (no cache) and ViTs deploy.
- TensorRT's ONNX parser reads the standard `Attention` op only from 10.14 on, and only with one
  output; JetPack 6.2 ships 10.3. `jetson` refuses a fused-attention bundle unless --trt-attention says
  the board's TensorRT is newer; `tensorrt` refuses one when the installed TensorRT is older than 10.14.
- The build's check: the engine (through runtime.tensorrt, as a user loads it) against onnxruntime on
  CPU running the same model.onnx, on random right-padded inputs at the profile's min, opt, max and a
  middle shape, real (unpadded) positions only. Error is max |engine - onnxruntime| / max(1, max |onnxruntime|):
  fp32 <= 1e-4 (the project's float32 tolerance, for outputs of magnitude up to 1); fp16 <= 1e-2 with
  cosine >= 0.999 (fp16 keeps 11 significant bits, ~5e-4 relative per operation, accumulated over
  layers; float32 LayerNorm/Softmax stop it from growing); int8 <= 5e-2 with cosine >= 0.995 (both sides
  compute the same QDQ graph, but a different accumulation order can move an activation across a
  rounding boundary by one quantization step). These bounds are reasoned, not yet measured on hardware:
  benchmarks/gpu_check.py measures them.

Layering: numpy, onnx (lazily) and edgeformer.runtime; never tensorrt, never torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgeformer.runtime.bundle import TOKENIZER_FILE, Bundle, Manifest
from edgeformer.runtime.tensorrt import ENGINE_FILE, TIMING_CACHE_FILE, version_tuple

from .folder import DeployError, DeployOptions

__all__ = ["axis_profile", "profile_from_axes", "precision_plan", "graph_facts", "refuse_bundle", "refuse_trt_version",
           "check_cases", "compare_outputs", "passes", "trtexec_command", "folder_readme", "fmt_shape",
           "TOLERANCES", "ATTENTION_MIN_TRT", "DEFAULT_MAX_BATCH", "DEFAULT_OPT_SEQ", "PRECISIONS", "FLOAT32_LAYERS"]

DEFAULT_MAX_BATCH = 32
DEFAULT_OPT_SEQ = 128
ATTENTION_MIN_TRT = (10, 14)  # TensorRT's ONNX parser reads the standard Attention op from here on
PRECISIONS = ("fp32", "fp16", "int8")
FLOAT32_LAYERS = ("NORMALIZATION", "SOFTMAX")  # trt.LayerType names pinned to float32 in an fp16 engine
# max |engine - onnxruntime| / max(1, max |onnxruntime|), and the smallest cosine (see the module docstring)
TOLERANCES = {"fp32": {"rel": 1e-4}, "fp16": {"rel": 1e-2, "cosine": 0.999}, "int8": {"rel": 5e-2, "cosine": 0.995}}


# --------------------------------------------------------------------------------------------- profiles


def axis_profile(manifest: Manifest, overrides: Mapping[str, tuple[int, int, int]] | None = None
                 ) -> dict[str, tuple[int, int, int]]:
    """axis -> (min, opt, max) for every named axis of the manifest's inputs; see the module docstring."""
    used: list[str] = []
    for spec in manifest.inputs:
        for d in spec.shape:
            if isinstance(d, str) and d not in used:
                used.append(d)
    overrides = dict(overrides or {})
    unknown = [a for a in overrides if a not in used]
    if unknown:
        raise DeployError(f"--profile names axis {unknown[0]!r}; this bundle's axes are: {', '.join(used) or 'none'}")
    out: dict[str, tuple[int, int, int]] = {}
    for axis in used:
        limits = manifest.axes.get(axis, {})
        lo, hi = int(limits.get("min", 1)), limits.get("max")
        if axis in overrides:
            o_lo, o_opt, o_hi = (int(v) for v in overrides[axis])
            if not 0 <= o_lo <= o_opt <= o_hi:
                raise DeployError(f"--profile {axis}={o_lo}:{o_opt}:{o_hi}: expected MIN <= OPT <= MAX")
            if o_lo < lo or (hi is not None and o_hi > hi):
                raise DeployError(f"--profile {axis}={o_lo}:{o_opt}:{o_hi} is outside the bundle's {axis} range "
                                  f"[{lo}, {hi if hi is not None else 'any'}]")
            out[axis] = (o_lo, o_opt, o_hi)
            continue
        if axis == "batch":
            top = int(hi) if hi is not None else max(DEFAULT_MAX_BATCH, lo)
            out[axis] = (lo, max(lo, 1), top)
        else:
            if hi is None:
                raise DeployError(f"axis {axis!r} has no maximum in the manifest; give one with "
                                  f"--profile {axis}=MIN:OPT:MAX")
            out[axis] = (lo, min(max(DEFAULT_OPT_SEQ, lo), int(hi)), int(hi))
    return out


def profile_from_axes(manifest: Manifest, overrides: Mapping[str, tuple[int, int, int]] | None = None
                      ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """input name -> (min shape, opt shape, max shape): the one optimization profile of the engine."""
    axes = axis_profile(manifest, overrides)
    shapes = {}
    for spec in manifest.inputs:
        shapes[spec.name] = tuple(tuple(d if isinstance(d, int) else axes[d][k] for d in spec.shape) for k in range(3))
    return shapes


# ------------------------------------------------------------------------------------------- precision


def precision_plan(manifest: Manifest, precision: str) -> dict[str, Any]:
    """What the builder does for `precision` with this bundle; DeployError for a combination it cannot build.

    Keys: precision, source (the bundle's numeric kind), strongly_typed, builder_flags / cleared_flags
    (trt.BuilderFlag names), float32_layers (trt.LayerType names pinned to float32), calibrator (always
    None: int8 is explicit, from the bundle's Q/DQ nodes), tolerance, summary.
    """
    if precision not in PRECISIONS:
        raise DeployError(f"unknown precision {precision!r}; expected one of: {', '.join(PRECISIONS)}")
    recipe = manifest.quantization.recipe if manifest.quantization else None
    source = recipe or "float32"
    if precision == "int8" and recipe != "int8-static":
        raise DeployError(f"--precision int8 needs an int8-static bundle (QDQ, symmetric: edgeformer quantize --recipe "
                          f"int8-static); this bundle is {source}, and TensorRT builds int8 only from explicit Q/DQ "
                          "nodes, without a calibrator")
    if recipe not in (None, "int8-static", "fp16"):
        raise DeployError(f"TensorRT cannot run an {recipe} bundle (its quantized ops are onnxruntime's); deploy its "
                          "float32 source with --precision fp16, or an int8-static bundle with --precision int8")
    if recipe == "int8-static" and precision != "int8":
        raise DeployError(f"this bundle is int8-static (QDQ): deploy it with --precision int8, or deploy its float32 "
                          f"source for --precision {precision}")
    if recipe == "fp16" and precision != "fp16":
        raise DeployError(f"this bundle is fp16 (edgeformer quantize --recipe fp16): deploy it with --precision fp16, "
                          f"or deploy its float32 source for --precision {precision}")
    plan: dict[str, Any] = {"precision": precision, "source": source, "strongly_typed": False, "builder_flags": [],
                            "cleared_flags": [], "float32_layers": [], "calibrator": None,
                            "tolerance": dict(TOLERANCES[precision])}
    if precision == "fp32":
        plan.update(cleared_flags=["TF32"], summary="float32 throughout, TF32 off")
    elif recipe == "fp16":
        plan.update(strongly_typed=True, summary="strongly typed: the bundle's fp16 graph, LayerNorm/Softmax in float32 as it holds them")
    elif precision == "fp16":
        plan.update(builder_flags=["FP16", "OBEY_PRECISION_CONSTRAINTS"], float32_layers=list(FLOAT32_LAYERS),
                    summary="fp16 kernels allowed, LayerNorm and Softmax layers pinned to float32")
    else:
        plan.update(strongly_typed=True, summary="strongly typed: int8 from the bundle's Q/DQ nodes (explicit quantization), "
                                                 "float32 elsewhere; no calibrator")
    return plan


# ------------------------------------------------------------------------------------------- refusals


def graph_facts(path: Path) -> dict[str, Any]:
    """What the refusals need to know of model.onnx: contrib-domain ops and the Attention nodes' outputs."""
    try:
        import onnx
    except ImportError:  # onnx is not a core dependency: fall back on the manifest's attention record
        return {"contrib_ops": [], "attention_nodes": None, "multi_output_attention": []}
    model = onnx.load(str(path), load_external_data=False)
    nodes = list(model.graph.node)
    contrib = sorted({f"{n.domain}.{n.op_type}" for n in nodes if n.domain not in ("", "ai.onnx")})
    attention = [n for n in nodes if n.op_type == "Attention" and n.domain in ("", "ai.onnx")]
    multi = [n.name or "Attention" for n in attention if sum(1 for o in n.output if o) > 1]
    return {"contrib_ops": contrib, "attention_nodes": len(attention), "multi_output_attention": multi}


def refuse_bundle(bundle: Bundle, target: str, manifest: Manifest, opt: DeployOptions) -> bool:
    """The refusals that hold on any machine (the bundle and the options); return whether it has fused Attention."""
    name = bundle.path.name
    precision_plan(manifest, opt.precision)
    facts = graph_facts(bundle.model_path)
    if facts["contrib_ops"]:
        raise DeployError(f"{name} holds onnxruntime contrib ops ({', '.join(facts['contrib_ops'][:3])}), which TensorRT "
                          "does not run; deploy a bundle in the standard ONNX domain")
    fused = (facts["attention_nodes"] > 0 if facts["attention_nodes"] is not None
             else manifest.attention.kind == "fused")
    if facts["multi_output_attention"]:
        raise DeployError(f"{name} has Attention nodes with more than one output ({facts['multi_output_attention'][0]}); "
                          "TensorRT's ONNX parser reads Attention with one output only: export with --attention unfused")
    if target == "jetson" and fused and not opt.trt_attention:
        raise DeployError(f"{name} has fused Attention nodes, which TensorRT's ONNX parser reads only from 10.14 on, and "
                          "JetPack 6.2 ships TensorRT 10.3: export the bundle with --attention unfused, or pass "
                          "--trt-attention if the board's TensorRT is 10.14 or later")
    axis_profile(manifest, opt.profile)
    return fused


def refuse_trt_version(name: str, fused: bool, version: str) -> None:
    """Refuse a fused-attention bundle when the installed TensorRT (`version`) is older than ATTENTION_MIN_TRT."""
    if fused and version_tuple(version)[:2] < ATTENTION_MIN_TRT:
        raise DeployError(f"{name} has fused Attention nodes, which TensorRT's ONNX parser reads only from 10.14 on; "
                          f"this machine has TensorRT {version}: export the bundle with --attention unfused")


# ------------------------------------------------------------------------------------------- the check


def check_cases(axes: Mapping[str, tuple[int, int, int]]) -> list[dict[str, int]]:
    """Shapes inside the profile: opt, min, max and a middle one (odd length), without repeats."""
    cases = []
    for pick in (1, 0, 2, None):
        sizes = {}
        for axis, (lo, op, hi) in axes.items():
            if pick is not None:
                sizes[axis] = (lo, op, hi)[pick]
            else:
                mid = (lo + hi) // 2
                sizes[axis] = mid if mid % 2 or mid + 1 > hi or axis == "batch" else mid + 1
        if sizes not in cases:
            cases.append(sizes)
    return cases


def compare_outputs(manifest: Manifest, feeds: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray],
                    got: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output: {"rel": max |got - ref| / max(1, max |ref|), "cosine": ...} over real (unpadded) positions."""
    mask = feeds.get("attention_mask")
    out = {}
    for spec in manifest.outputs:
        r, g = np.asarray(ref[spec.name], dtype=np.float64), np.asarray(got[spec.name], dtype=np.float64)
        if r.shape != g.shape:
            raise DeployError(f"the engine's {spec.name} has shape {g.shape}; onnxruntime's has {r.shape}")
        if mask is not None and len(spec.shape) >= 2 and tuple(spec.shape[:2]) == ("batch", "seq") and mask.ndim == 2:
            valid = mask.astype(bool)
            r, g = r[valid], g[valid]
        r, g = r.ravel(), g.ravel()
        diff = float(np.abs(r - g).max(initial=0.0))
        scale = max(1.0, float(np.abs(r).max(initial=0.0)))
        denom = float(np.linalg.norm(r) * np.linalg.norm(g))
        cosine = float(r @ g / denom) if denom > 0 else float(np.array_equal(r, g))
        out[spec.name] = {"max_abs": diff, "rel": diff / scale, "cosine": cosine}
    return out


def passes(metrics: Mapping[str, float], tolerance: Mapping[str, float]) -> bool:
    ok = metrics["rel"] <= tolerance["rel"] and np.isfinite(metrics["rel"])
    return bool(ok and metrics["cosine"] >= tolerance.get("cosine", -1.0))


def fmt_shape(shape) -> str:
    return "x".join(str(d) for d in shape)


# ------------------------------------------------------------------------------------------ the folder


def trtexec_command(onnx_name: str, shapes: Mapping[str, tuple], plan: Mapping[str, Any]) -> str:
    """The trtexec equivalent of the build (for reference and for debugging with NVIDIA's tools)."""
    spec = lambda k: ",".join(f"{n}:{fmt_shape(s[k])}" for n, s in shapes.items())  # noqa: E731
    parts = [f"trtexec --onnx={onnx_name} --saveEngine={ENGINE_FILE} --timingCacheFile={TIMING_CACHE_FILE}",
             f"--minShapes={spec(0)}", f"--optShapes={spec(1)}", f"--maxShapes={spec(2)}"]
    if plan["strongly_typed"]:
        parts.append("--stronglyTyped")
    if "FP16" in plan["builder_flags"]:
        parts.append("--fp16 --precisionConstraints=obey --layerPrecisions=<each name in deploy.tensorrt.float32_layers>:fp32")
    if "TF32" in plan["cleared_flags"]:
        parts.append("--noTF32")
    return " \\\n    ".join(parts)


def folder_readme(target: str, manifest: Manifest, plan: Mapping[str, Any], axes: Mapping[str, tuple],
                  shapes: Mapping[str, tuple], record: Mapping[str, Any]) -> str:
    names = [s.name for s in manifest.inputs]
    text = manifest.model.task in ("classification", "embedding") or TOKENIZER_FILE in manifest.files
    lines = ["## The engine", "",
             f"Built with TensorRT {record['version']} on {record['gpu']} (compute capability "
             f"{record['compute_capability']}), {plan['precision']}: {plan['summary']}. It runs only with that TensorRT "
             "version on GPUs of that compute capability; `runtime.load` checks both before reading the engine and "
             "refuses anything else in one line.", "",
             "Optimization profile (inputs outside it are refused): "
             + ", ".join(f"{a} {lo}..{hi} (tuned for {op})" for a, (lo, op, hi) in axes.items()) + ".", "",
             "## Run it on the device", "", "```sh", "pip install 'edgeformer[tensorrt]'   # on a Jetson: TensorRT comes with JetPack, see docs/jetson.md"]
    if text:
        lines.append('edgeformer run THIS_FOLDER --text "a sentence to embed or classify"')
    lines += ['edgeformer run THIS_FOLDER --ids "5 17 42"', "```", "", "```python", "from edgeformer import runtime",
              'model = runtime.load("THIS_FOLDER")          # TensorRT\'s runtime; model.providers == ["TensorRT"]',
              f"out = model({{{', '.join(repr(n) + ': ...' for n in names)}}})   # dict of numpy arrays", "```", "",
              "## Rebuild", "",
              "After a TensorRT upgrade or on another GPU the engine is refused; rebuild it from the source bundle with "
              f"`edgeformer deploy SOURCE_BUNDLE --target {target} --precision {plan['precision']} --out THIS_FOLDER "
              "--overwrite` (the old folder's timing cache seeds the build when it still fits). `model.onnx` here is "
              "the graph the engine came from, byte for byte. The equivalent trtexec command, for reference:", "",
              "```sh", trtexec_command(record["onnx"], shapes, plan), "```"]
    return "\n".join(lines)
