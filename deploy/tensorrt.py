"""The `tensorrt` and `jetson` deploy targets: a bundle -> a TensorRT engine built on the machine that runs it.

    edgeformer deploy bundle/ --target tensorrt --out bundle-trt/ [--precision fp16|fp32|int8] [--profile seq=1:128:256]
    edgeformer deploy bundle/ --target jetson   --out bundle-orin/     # on the board itself (JetPack 6.1+)

The folder: `model.engine` (what the runtime loads, with TensorRT's own runtime: runtime/tensorrt.py),
`timing.cache` (the builder's kernel timings: a rebuild on the same GPU and TensorRT reuses them),
`model.onnx` (the graph the engine came from, byte for byte the bundle's, for trtexec or a rebuild after a
TensorRT upgrade), `manifest.json` (with deploy.tensorrt: TensorRT's version, the GPU and its compute
capability, the precision plan and the optimization profile) and README.md.

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
- Key/value-cache decoders and seq2seq bundles are refused: generation (runtime.generate) keeps the
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

Layering: numpy, onnx, onnxruntime, edgeformer.runtime and (lazily) tensorrt; never torch.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgeformer.runtime.bundle import CACHED_DECODER, MANIFEST_FILE, SEQ2SEQ, TOKENIZER_FILE, Bundle, Manifest
from edgeformer.runtime.tensorrt import (ENGINE_FILE, TIMING_CACHE_FILE, TensorRTUnavailable, check_engine_compatible,
                                         gpu_info, import_cudart, import_tensorrt, version_tuple)

from .folder import Check, Deployment, DeployError, DeployOptions

__all__ = ["profile_from_axes", "axis_profile", "precision_plan", "check_engine_compatible", "refuse", "build",
           "TOLERANCES", "ATTENTION_MIN_TRT"]

DEFAULT_MAX_BATCH = 32
DEFAULT_OPT_SEQ = 128
ATTENTION_MIN_TRT = (10, 14)  # TensorRT's ONNX parser reads the standard Attention op from here on
PRECISIONS = ("fp32", "fp16", "int8")
FLOAT32_LAYERS = ("NORMALIZATION", "SOFTMAX")  # trt.LayerType names pinned to float32 in an fp16 engine
# max |engine - onnxruntime| / max(1, max |onnxruntime|), and the smallest cosine (see the module docstring)
TOLERANCES = {"fp32": {"rel": 1e-4}, "fp16": {"rel": 1e-2, "cosine": 0.999}, "int8": {"rel": 5e-2, "cosine": 0.995}}
WHERE = "run this on the device that will use the engine, see docs/jetson.md"


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


def is_jetson() -> bool:
    """A Jetson board runs L4T, which writes /etc/nv_tegra_release."""
    return Path("/etc/nv_tegra_release").exists()


def machine_status() -> tuple[Any, Any, dict[str, Any]]:
    """(tensorrt module, cudart module, gpu info), or DeployError naming what is missing."""
    try:
        trt = import_tensorrt()
        cudart = import_cudart()
        gpu = gpu_info(cudart)
    except TensorRTUnavailable as e:
        raise DeployError(f"{e} — {WHERE}") from None
    return trt, cudart, gpu


def refuse(bundle: Bundle, target: str, manifest: Manifest, opt: DeployOptions) -> None:
    """Raise DeployError (one line) for what this target cannot take, before anything is written.

    Order: what is wrong with the bundle or the options first (true on any machine), then the machine
    (not a Jetson for `jetson`), then the tools (TensorRT, its version, the CUDA binding, a GPU).
    """
    name = bundle.path.name
    if manifest.kind in (SEQ2SEQ, CACHED_DECODER):
        kind = "a seq2seq" if manifest.kind == SEQ2SEQ else "a key/value-cache decoder"
        raise DeployError(f"{name} is {kind} bundle; TensorRT deployments cover encoders, classifiers, ViTs and decoders "
                          "without a cache (generation keeps its cache in onnxruntime's buffers): deploy it with "
                          "--target arm64 or run it with onnxruntime")
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
    if target == "jetson" and not is_jetson():
        raise DeployError("--target jetson builds the engine on the board itself (engines are specific to a GPU and a "
                          "TensorRT version) and this machine is not a Jetson (no /etc/nv_tegra_release): copy the bundle "
                          "to the board and run this command there, see docs/jetson.md; for this machine's GPU use "
                          "--target tensorrt")
    trt, _, _ = machine_status()
    if fused and version_tuple(trt.__version__)[:2] < ATTENTION_MIN_TRT:
        raise DeployError(f"{name} has fused Attention nodes, which TensorRT's ONNX parser reads only from 10.14 on; "
                          f"this machine has TensorRT {trt.__version__}: export the bundle with --attention unfused")


# ----------------------------------------------------------------------------------------------- build


def _previous_timing_cache(opt: DeployOptions) -> bytes:
    """The timing cache to seed the build with (--timing-cache; by default the one of the folder that
    --overwrite replaces). TensorRT itself rejects a cache made by another TensorRT or GPU
    (set_timing_cache(..., ignore_mismatch=False))."""
    if not opt.timing_cache:
        return b""
    try:
        return Path(opt.timing_cache).read_bytes()
    except OSError as e:
        raise DeployError(f"cannot read the timing cache {opt.timing_cache}: {e.strerror}") from None


def _parser_errors(parser) -> str:
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        try:
            where = f"{err.node_operator()} node {err.node_name()!r}: " if err.node_name() else ""
            text = f"{where}{err.desc()}"
        except AttributeError:
            text = str(err)
        lines.append(" ".join(text.split()))
    return "; ".join(lines) or "no error reported"


def _logger(trt):
    from edgeformer.runtime.tensorrt import _logger as make

    return make(trt)


def build_engine(onnx_path: Path, shapes: Mapping[str, tuple], plan: Mapping[str, Any], cache_in: bytes,
                 progress: Callable[[str], None]) -> tuple[bytes, bytes, dict[str, Any]]:
    """Parse `onnx_path`, build the engine as `plan` says; return (engine bytes, timing cache bytes, facts)."""
    trt = import_tensorrt()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if plan["strongly_typed"]:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise DeployError(f"TensorRT {trt.__version__}'s ONNX parser cannot read {onnx_path.name}: {_parser_errors(parser)}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    for flag in plan["builder_flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    for flag in plan["cleared_flags"]:
        config.clear_flag(getattr(trt.BuilderFlag, flag))
    pinned = []
    kinds = {getattr(trt.LayerType, k) for k in plan["float32_layers"] if hasattr(trt.LayerType, k)}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in kinds:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned.append(layer.name)
    cache_reused = False
    if cache_in:  # TensorRT refuses (False) a cache made by another TensorRT or GPU
        try:
            cache = config.create_timing_cache(cache_in)
            cache_reused = cache is not None and bool(config.set_timing_cache(cache, ignore_mismatch=False))
        except Exception:  # noqa: BLE001 - an unreadable old cache only costs build time
            cache_reused = False
    if not cache_reused:
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    progress(f"building a {plan['precision']} TensorRT {trt.__version__} engine ({network.num_layers} layers"
             + (f", {len(pinned)} pinned to float32" if pinned else "") + "); this takes a while")
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        detail = logger.errors[-1] if logger.errors else "no reason given"
        raise DeployError(f"TensorRT {trt.__version__} could not build an engine from {onnx_path.name}: {detail}")
    seconds = time.perf_counter() - start
    timing = bytes(memoryview(config.get_timing_cache().serialize()))
    facts = {"layers": network.num_layers, "float32_layers": pinned, "timing_cache_reused": cache_reused,
             "build_seconds": round(seconds, 1)}
    return bytes(memoryview(serialized)), timing, facts


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


def _median_ms(fn: Callable[[], Any], runs: int = 30, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def _fmt_shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def build(bundle: Bundle, target: str, manifest: Manifest, work: Path, opt: DeployOptions,
          progress: Callable[[str], None]) -> Deployment:
    """Build model.engine in `work` on this machine's GPU and check it against onnxruntime on CPU."""
    from edgeformer.runtime.inputs import example_inputs
    from edgeformer.runtime.sessions import create_session
    from edgeformer.runtime.tensorrt import load_engine

    trt, _, gpu = machine_status()
    plan = precision_plan(manifest, opt.precision)
    axes = axis_profile(manifest, opt.profile)
    shapes = profile_from_axes(manifest, opt.profile)
    # The graph and its external data, byte for byte (the tokenizer is copied by folder.deploy).
    for rel in bundle.manifest.files:
        if rel not in (MANIFEST_FILE, TOKENIZER_FILE) and not rel.endswith(".md"):
            dst = work / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(bundle.path / rel, dst)
    onnx_path = work / bundle.manifest.graph  # a source bundle's graph: model.onnx
    engine, timing, facts = build_engine(onnx_path, shapes, plan, _previous_timing_cache(opt), progress)
    (work / ENGINE_FILE).write_bytes(engine)
    (work / TIMING_CACHE_FILE).write_bytes(timing)

    for axis, (lo, _, hi) in axes.items():  # the runtime refuses what the profile cannot take
        manifest.axes[axis] = {"min": lo, "max": hi}
    record = {
        "version": trt.__version__, "gpu": gpu["name"], "compute_capability": gpu["compute_capability"],
        "precision": opt.precision, "plan": {k: v for k, v in plan.items() if k != "tolerance"},
        "profile": {axis: list(v) for axis, v in axes.items()},
        "input_shapes": {n: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])} for n, s in shapes.items()},
        "onnx": onnx_path.name, "timing_cache": TIMING_CACHE_FILE, "attention": manifest.attention.kind,
        "tolerance": plan["tolerance"], **facts,
    }

    # The check: the engine as a user loads it, against onnxruntime on CPU on the same graph.
    progress("checking the engine against onnxruntime (CPU) at the profile's min, opt, max and a middle shape")
    probe = Manifest.from_json({**manifest.to_json(), "graph": ENGINE_FILE,
                                "deploy": {"target": target, "tensorrt": record}})
    model = load_engine(Bundle(work, probe))
    session, _ = create_session(onnx_path)
    names = [s.name for s in manifest.outputs]
    rng = np.random.default_rng(opt.seed)
    rows, worst, failed = [], {}, []
    for sizes in check_cases(axes):
        feeds = example_inputs(manifest.inputs, sizes, rng, padded=True)
        ref = dict(zip(names, session.run(names, feeds)))
        got = model(feeds)
        for name, m in compare_outputs(manifest, feeds, ref, got).items():
            shape = _fmt_shape(feeds[manifest.inputs[0].name].shape)
            ok = passes(m, plan["tolerance"])
            rows.append([shape, name, f"{m['max_abs']:.3g}", f"{m['rel']:.3g}", f"{m['cosine']:.6f}", "pass" if ok else "FAIL"])
            if not ok:
                failed.append(f"{name} at {shape}")
            if name not in worst or m["rel"] > worst[name]["rel"]:
                worst[name] = {**m, "shape": shape}
    tol = plan["tolerance"]
    limit = f"rel <= {tol['rel']:g}" + (f", cosine >= {tol['cosine']:g}" if "cosine" in tol else "")
    top = max(worst.items(), key=lambda kv: kv[1]["rel"]) if worst else ("-", {"rel": float("nan"), "cosine": float("nan"), "shape": "-"})
    detail = (f"{len(check_cases(axes))} shapes, worst {top[0]} rel error {top[1]['rel']:.3g}, cosine {top[1]['cosine']:.6f} "
              f"at {top[1]['shape']} ({limit})" + (f"; failed: {', '.join(failed[:3])}" if failed else ""))
    checks = [Check(f"{opt.precision} engine vs onnxruntime CPU", not failed, detail,
                    {"tolerance": tol, "worst": worst})]

    opt_feeds = example_inputs(manifest.inputs, {a: v[1] for a, v in axes.items()}, rng, padded=False)
    engine_ms = _median_ms(lambda: model(opt_feeds))
    model.close()
    record["latency_ms"] = {"shape": _fmt_shape(opt_feeds[manifest.inputs[0].name].shape), "engine_median": round(engine_ms, 3),
                            "note": "includes host<->device copies; one process, 30 runs after 5 warm-up"}
    tables = [(f"TensorRT {trt.__version__} {opt.precision} engine vs onnxruntime CPU ({gpu['name']}, "
               f"compute capability {gpu['compute_capability']})",
               ["shape", "output", "max abs", "rel error", "cosine", "verdict"], rows),
              ("optimization profile", ["axis", "min", "opt", "max"], [[a, *v] for a, v in axes.items()])]
    return Deployment(graph=ENGINE_FILE, checks=checks, readme=folder_readme(target, manifest, plan, axes, shapes, record),
                      record={"tensorrt": record}, tables=tables)


def trtexec_command(onnx_name: str, shapes: Mapping[str, tuple], plan: Mapping[str, Any]) -> str:
    """The trtexec equivalent of the build (for reference and for debugging with NVIDIA's tools)."""
    spec = lambda k: ",".join(f"{n}:{_fmt_shape(s[k])}" for n, s in shapes.items())  # noqa: E731
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
