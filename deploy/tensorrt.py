"""The `tensorrt` and `jetson` deploy targets: a bundle -> a TensorRT engine built on the machine that runs it.

    edgeformer deploy bundle/ --target tensorrt --out bundle-trt/ [--precision fp16|fp32|int8] [--profile seq=1:128:256]
    edgeformer deploy bundle/ --target jetson   --out bundle-orin/     # on the board itself (JetPack 6.1+)

The folder: `model.engine` (what the runtime loads, with TensorRT's own runtime: runtime/tensorrt.py),
`timing.cache` (the builder's kernel timings: a rebuild on the same GPU and TensorRT reuses them),
`model.onnx` (the graph the engine came from, byte for byte the bundle's, for trtexec or a rebuild after a
TensorRT upgrade), `manifest.json` (with deploy.tensorrt: TensorRT's version, the GPU and its compute
capability, the precision plan and the optimization profile) and README.md.

The decisions (the optimization profile, the precision plans, what is refused, the check's shapes and
tolerances) and their reasons are in deploy/tensorrt_plan.py, which needs no TensorRT; this module
refuses what the machine cannot do, builds the engine with TensorRT's API and checks it.

Layering: numpy, onnx, onnxruntime, edgeformer.runtime and (lazily) tensorrt; never torch.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgeformer.runtime.bundle import MANIFEST_FILE, TOKENIZER_FILE, Bundle, Manifest
from edgeformer.runtime.tensorrt import (ENGINE_FILE, TIMING_CACHE_FILE, TensorRTUnavailable, check_engine_compatible,
                                         gpu_info, import_cudart, import_tensorrt)

from .folder import Check, Deployment, DeployError, DeployOptions
from .kinds import refuse_kind
from .tensorrt_plan import (ATTENTION_MIN_TRT, TOLERANCES, axis_profile, check_cases, compare_outputs, fmt_shape,
                            folder_readme, passes, precision_plan, profile_from_axes, refuse_bundle, refuse_trt_version)
# re-exported: the planning names callers have imported from this module
from .tensorrt_plan import DEFAULT_MAX_BATCH, DEFAULT_OPT_SEQ, FLOAT32_LAYERS, PRECISIONS, graph_facts, trtexec_command  # noqa: F401

__all__ = ["profile_from_axes", "axis_profile", "precision_plan", "check_engine_compatible", "refuse", "build",
           "TOLERANCES", "ATTENTION_MIN_TRT"]

WHERE = "run this on the device that will use the engine, see docs/jetson.md"


# ------------------------------------------------------------------------------------------- refusals


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
    refuse_kind(bundle, target, manifest)  # deploy/kinds.py: generation bundles
    fused = refuse_bundle(bundle, target, manifest, opt)
    if target == "jetson" and not is_jetson():
        raise DeployError("--target jetson builds the engine on the board itself (engines are specific to a GPU and a "
                          "TensorRT version) and this machine is not a Jetson (no /etc/nv_tegra_release): copy the bundle "
                          "to the board and run this command there, see docs/jetson.md; for this machine's GPU use "
                          "--target tensorrt")
    trt, _, _ = machine_status()
    refuse_trt_version(bundle.path.name, fused, trt.__version__)


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


def _median_ms(fn: Callable[[], Any], runs: int = 30, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def _copy_graph(bundle: Bundle, work: Path) -> Path:
    """The graph and its external data into `work`, byte for byte (the tokenizer is copied by folder.deploy)."""
    for rel in bundle.manifest.files:
        if rel not in (MANIFEST_FILE, TOKENIZER_FILE) and not rel.endswith(".md"):
            dst = work / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(bundle.path / rel, dst)
    return work / bundle.manifest.graph  # a source bundle's graph: model.onnx


def _check_engine(model, onnx_path: Path, manifest: Manifest, axes: Mapping[str, tuple[int, int, int]],
                  tol: Mapping[str, float], precision: str, rng: np.random.Generator) -> tuple[Check, list[list[str]]]:
    """The engine as a user loads it, against onnxruntime on CPU on the same graph: (the check, the table's rows)."""
    from edgeformer.runtime.inputs import example_inputs, global_slots
    from edgeformer.runtime.sessions import create_session

    session, _ = create_session(onnx_path)
    names = [s.name for s in manifest.outputs]
    rows, worst, failed = [], {}, []
    for sizes in check_cases(axes):
        feeds = example_inputs(manifest.inputs, sizes, rng, padded=True, global_tokens=global_slots(manifest))
        ref = dict(zip(names, session.run(names, feeds)))
        got = model(feeds)
        for name, m in compare_outputs(manifest, feeds, ref, got).items():
            shape = fmt_shape(feeds[manifest.inputs[0].name].shape)
            ok = passes(m, tol)
            rows.append([shape, name, f"{m['max_abs']:.3g}", f"{m['rel']:.3g}", f"{m['cosine']:.6f}", "pass" if ok else "FAIL"])
            if not ok:
                failed.append(f"{name} at {shape}")
            if name not in worst or m["rel"] > worst[name]["rel"]:
                worst[name] = {**m, "shape": shape}
    limit = f"rel <= {tol['rel']:g}" + (f", cosine >= {tol['cosine']:g}" if "cosine" in tol else "")
    top = max(worst.items(), key=lambda kv: kv[1]["rel"]) if worst else ("-", {"rel": float("nan"), "cosine": float("nan"), "shape": "-"})
    detail = (f"{len(check_cases(axes))} shapes, worst {top[0]} rel error {top[1]['rel']:.3g}, cosine {top[1]['cosine']:.6f} "
              f"at {top[1]['shape']} ({limit})" + (f"; failed: {', '.join(failed[:3])}" if failed else ""))
    return Check(f"{precision} engine vs onnxruntime CPU", not failed, detail, {"tolerance": tol, "worst": worst}), rows


def build(bundle: Bundle, target: str, manifest: Manifest, work: Path, opt: DeployOptions,
          progress: Callable[[str], None]) -> Deployment:
    """Build model.engine in `work` on this machine's GPU and check it against onnxruntime on CPU."""
    from edgeformer.runtime.inputs import example_inputs, global_slots
    from edgeformer.runtime.tensorrt import load_engine

    trt, _, gpu = machine_status()
    plan = precision_plan(manifest, opt.precision)
    axes = axis_profile(manifest, opt.profile)
    shapes = profile_from_axes(manifest, opt.profile)
    onnx_path = _copy_graph(bundle, work)
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

    progress("checking the engine against onnxruntime (CPU) at the profile's min, opt, max and a middle shape")
    probe = Manifest.from_json({**manifest.to_json(), "graph": ENGINE_FILE,
                                "deploy": {"target": target, "tensorrt": record}})
    model = load_engine(Bundle(work, probe))
    rng = np.random.default_rng(opt.seed)
    check, rows = _check_engine(model, onnx_path, manifest, axes, plan["tolerance"], opt.precision, rng)

    opt_feeds = example_inputs(manifest.inputs, {a: v[1] for a, v in axes.items()}, rng, padded=False, global_tokens=global_slots(manifest))
    engine_ms = _median_ms(lambda: model(opt_feeds))
    model.close()
    record["latency_ms"] = {"shape": fmt_shape(opt_feeds[manifest.inputs[0].name].shape), "engine_median": round(engine_ms, 3),
                            "note": "includes host<->device copies; one process, 30 runs after 5 warm-up"}
    tables = [(f"TensorRT {trt.__version__} {opt.precision} engine vs onnxruntime CPU ({gpu['name']}, "
               f"compute capability {gpu['compute_capability']})",
               ["shape", "output", "max abs", "rel error", "cosine", "verdict"], rows),
              ("optimization profile", ["axis", "min", "opt", "max"], [[a, *v] for a, v in axes.items()])]
    return Deployment(graph=ENGINE_FILE, checks=[check], readme=folder_readme(target, manifest, plan, axes, shapes, record),
                      record={"tensorrt": record}, tables=tables)
