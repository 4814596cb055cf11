"""The `android` and `ios` targets: the ONNX Runtime format for onnxruntime's mobile packages.

    model.onnx ─► (--fixed-shape: make_dim_param_fixed per axis)
               ─► 4-bit embedding tables repacked as uint8 nibbles (ort_tables.py: the ORT format has no 4-bit type)
               ─► convert_onnx_models_to_ort ─► model.ort + required_operators.config (for a reduced build)
               ─► usability checker per mobile execution provider ─► coverage.json
               ─► model.ort loaded, and run against the bundle's model.onnx on x86 at several shapes (max abs <= 1e-6 x max(1, |output|))

Everything is onnxruntime's own tooling. A dynamic-shape graph is converted with the 'Fixed'
optimization style (optimizations applied before saving: what the CPU provider runs best); a
fixed-shape graph, meant for NNAPI or CoreML, with the 'Runtime' style, which keeps the standard ops
those providers can take and records the rest of the optimizations for the CPU to replay.
The converter's report of success is not trusted: it has written files that no onnxruntime loads.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeformer.runtime.bundle import Bundle, Manifest
from edgeformer.runtime.compare import max_abs
from edgeformer.runtime.inputs import axis_sizes, example_inputs, global_slots
from edgeformer.runtime.quiet import quiet
from edgeformer.runtime.sessions import SessionError, create_session

from .folder import Check, Deployment, DeployError, DeployOptions
from .int4_levels import float32_activation_levels
from .kinds import refuse_kind
from .ort_tables import MIN_ORT as PACKED_TABLES_MIN_ORT

ORT_FILE = "model.ort"
OPS_CONFIG = "required_operators.config"
COVERAGE_FILE = "coverage.json"
# the .ort runs the same kernels as the .onnx on the same CPU: only fusion order may differ, a few float32 steps of
# the output's own size (a keyword spotter's pooled logits near 1.7 differed by 1.07e-6: 9 steps of 1.2e-7)
ATOL = 1e-6  # times max(1, |output|)
ATTENTION_MIN_ORT = "1.23"  # the CPU kernels of the opset-23 Attention and RotaryEmbedding ops arrived in onnxruntime 1.23
# The converter saves MatMulNBits with its `weight_prepacked` attribute. Measured on .ort files written by
# onnxruntime 1.32: 1.28, 1.29, 1.30, 1.31 load them; 1.25 and 1.27 refuse them ("Unrecognized attribute").
MATMUL_NBITS_MIN_ORT = "1.28"
# The execution providers each target can use, and the supported-op tables onnxruntime ships for them.
PROVIDERS = {
    "android": [("NNAPI", None)],
    "ios": [("CoreML NeuralNetwork", "coreml_supported_neuralnetwork_ops.md"),
            ("CoreML MLProgram", "coreml_supported_mlprogram_ops.md")],
}


def refuse(bundle: Bundle, target: str, manifest: Manifest, opt: DeployOptions) -> None:
    refuse_kind(bundle, target, manifest)  # deploy/kinds.py
    left = dynamic_axes(manifest)
    if opt.fixed_shape and left:
        warnings.warn(f"--fixed-shape {','.join(f'{a}={n}' for a, n in opt.fixed_shape.items())} leaves axis "
                      f"{', '.join(left)} dynamic: {PROVIDERS[target][0][0]} then takes few of the graph's nodes (see the "
                      f"coverage table); fix every axis, e.g. --fixed-shape {example_fixed(manifest, opt.fixed_shape)}",
                      RuntimeWarning, stacklevel=2)
    try:
        import onnx
    except ImportError:
        raise DeployError("the android and ios targets need the onnx package (pip install 'edgeformer[deploy]')") from None
    if len([f for f in bundle.manifest.files if f.endswith(".onnx")]) > 1:
        raise DeployError(f"{bundle.path} has several graphs (a seq2seq bundle); the {target} target takes "
                          "one-graph bundles for now")
    if any(s.dtype not in ("float32", "float16", "int64", "int32", "bool") for s in manifest.inputs):
        raise DeployError(f"{bundle.path} has inputs of types ONNX Runtime Mobile does not feed from Java/Objective-C")
    from .ort_tables import unstorable

    why = unstorable(onnx.load(str(bundle.model_path), load_external_data=False))  # the structure only
    if why:
        raise DeployError(f"the {target} target cannot take {bundle.path}: the ORT format has no 4-bit type, and {why}; "
                          "quantize the float32 bundle with `edgeformer quantize --recipe int4` (or an int8 recipe)")


def build(bundle: Bundle, target: str, manifest: Manifest, work: Path, opt: DeployOptions,
          progress: Callable[[str], None]) -> Deployment:
    import onnx

    from .ort_tables import repack_tables

    with tempfile.TemporaryDirectory(prefix="edgeformer-mobile-") as scratch:
        scratch = Path(scratch)
        reference, src = scratch / "bundle.onnx", scratch / "model.onnx"  # the bundle's graph; the one converted
        model = onnx.load(str(bundle.model_path))
        levels = float32_activation_levels(model)  # a phone's ARM kernel quantizes int8 activations its own way
        if levels is not None:
            manifest.quantization.accuracy_level = 0
        if opt.fixed_shape:
            model = fix_shapes(model, opt.fixed_shape)
        onnx.save(model, str(reference))
        repacked = repack_tables(model)
        if repacked:
            progress(f"{target}: {len(repacked)} int4 embedding table(s) stored as uint8 nibbles for the ORT format")
            onnx.save(model, str(src))
        else:
            src = reference
        del model
        style = "Runtime" if opt.fixed_shape else "Fixed"
        progress(f"{target}: converting to ONNX Runtime format ({style} optimization style)")
        convert_to_ort(src, scratch / "ort", style)
        progress(f"{target}: loading model.ort")
        check_loads(scratch / "ort" / ORT_FILE, target)
        shutil.copy2(scratch / "ort" / ORT_FILE, work / ORT_FILE)
        shutil.copy2(scratch / "ort" / OPS_CONFIG, work / OPS_CONFIG)
        progress(f"{target}: checking mobile execution provider coverage")
        coverage = provider_coverage(src, target)
        (work / COVERAGE_FILE).write_text(json.dumps(coverage, indent=2) + "\n")
        progress(f"{target}: checking model.ort against model.onnx")
        check = ort_parity(reference, work / ORT_FILE, manifest, style, opt.seed)
    ops = required_ops(work / OPS_CONFIG)
    min_ort = minimum_onnxruntime(manifest, ops, repacked)
    rows = [[c["provider"], f"{c['supported_nodes']}/{c['nodes']}", c["partitions"],
             ", ".join(c["unsupported_ops"]) or "-", c["dynamic_shape_nodes"], c["verdict"]] for c in coverage]
    return Deployment(
        graph=ORT_FILE,
        checks=[check],
        readme=_readme(target, manifest, coverage, min_ort, style, repacked, opt, bundle.tokenizer_path is not None),
        record={"ort_optimization_style": style, "min_onnxruntime": min_ort, "coverage": COVERAGE_FILE,
                "required_operators": ops, "repacked_tables": repacked, "matmulnbits_accuracy_level": levels},
        tables=[(f"{target}: execution provider coverage (onnxruntime usability checker)",
                 ["provider", "nodes taken", "partitions", "falls back to CPU", "dynamic-shape nodes", "verdict"], rows)],
    )


def fix_shapes(model, fixed: dict[str, int]):
    """The graph with each named axis (dim_param) fixed to its size, outputs' shapes inferred again."""
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_dim_param_fixed

    for axis, size in fixed.items():
        make_dim_param_fixed(model.graph, axis, size)
    fix_output_shapes(model)
    return model


def convert_to_ort(src: Path, out_dir: Path, style: str) -> None:
    """onnxruntime.tools.convert_onnx_models_to_ort on one graph; writes model.ort and required_operators.config."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    try:
        with quiet():
            convert_onnx_models_to_ort(src, output_dir=out_dir, optimization_styles=[OptimizationStyle[style]],
                                       target_platform="arm")
    except Exception as e:  # the converter raises whatever onnxruntime raised
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DeployError(f"onnxruntime could not convert the graph to ORT format: {first}") from None
    # The tool names its outputs after the style: model.ort (Fixed) or model.with_runtime_opt.ort (Runtime).
    made = sorted(out_dir.glob("*.ort"))
    configs = sorted(out_dir.glob("*.config"))
    if len(made) != 1 or len(configs) != 1:
        raise DeployError(f"onnxruntime's converter wrote {[p.name for p in made + configs]}; expected one .ort and one .config")
    made[0].rename(out_dir / ORT_FILE)
    # The tool's header names the temporary path it converted; name the file the folder holds instead.
    lines = [l for l in configs[0].read_text().splitlines() if not l.startswith("#")]
    (out_dir / OPS_CONFIG).write_text("\n".join([f"# Operators of {ORT_FILE}: build onnxruntime with "
                                                 f"--include_ops_by_config {OPS_CONFIG}"] + lines) + "\n")


def check_loads(ort_path: Path, target: str) -> None:
    """Open the converted file in this onnxruntime: the converter has reported success on files none can load."""
    import onnxruntime as ort

    try:
        create_session(ort_path, disabled_optimizers=())  # onnxruntime's defaults, as an app's session has them
    except SessionError as e:
        raise DeployError(f"onnxruntime {ort.__version__} cannot load the model.ort its converter wrote ({e.reason}); "
                          f"the {target} target cannot take this bundle") from None


def provider_coverage(src: Path, target: str) -> list[dict[str, Any]]:
    """onnxruntime's usability checker per execution provider of `target`: nodes taken, partitions,
    ops that fall back to CPU, nodes lost to dynamic shapes, and its verdict (YES, MAYBE, NO)."""
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    with tempfile.TemporaryDirectory() as tmp, quiet():
        basic = Path(tmp) / "basic.onnx"
        optimize_model(src, basic, use_external_initializers=True)  # what the checker itself does first
        model = ModelProtoWithShapeInfo(basic).model_with_shape_info
        out = []
        for name, table in PROVIDERS[target]:
            info = (uc.check_nnapi_partitions(model, require_fixed_input_sizes=True) if table is None
                    else uc.check_coreml_partitions(model, require_fixed_input_sizes=True, config_filename=table))
            out.append({"provider": name, "nodes": info.num_nodes, "supported_nodes": info.num_supported_nodes,
                        "partitions": info.num_partitions, "partition_sizes": [len(g) for g in info.supported_groups],
                        "unsupported_ops": sorted(info.unsupported_ops),
                        "dynamic_shape_nodes": info.nodes_unsupported_due_to_dynamic_input,
                        "verdict": info.suitability().name})
    return out


def app_readme(target: str, manifest: Manifest, folder: Path, opt: DeployOptions, record: dict[str, Any]) -> str:
    """The README's app section (Kotlin or Swift), from the folder's own vectors (deploy/mobile_app.py)."""
    from .mobile_app import example_case, section

    case = example_case(manifest, folder / "vectors.json", opt.fixed_shape)
    return section(target, case, record.get("ort_optimization_style") == "Runtime")


def check_shapes_for(manifest: Manifest) -> list[dict[str, int]]:
    """The axis sizes the .ort check runs at: a few within the manifest's limits (one for a fixed shape)."""
    cases = []
    for batch, seq in ((1, 8), (3, 17), (2, 64)):
        sizes = axis_sizes(manifest, batch, seq)
        if sizes not in cases:
            cases.append(sizes)
    return cases


def ort_parity(onnx_path: Path, ort_path: Path, manifest: Manifest, style: str, seed: int) -> Check:
    """Run the .ort and the .onnx it came from on the same random inputs, padded and not; compare every output.

    The .onnx runs at the optimization level the .ort was saved with ('Fixed': all; 'Runtime': basic, the
    rest being left to the device's providers), so the same kernels run and the outputs should agree to
    the last bit. The gap to the fully optimized .onnx (fusions that round differently) is recorded too.
    """
    def session(path: Path, level: str):
        # every fusion, as the converter applied them: the same kernels on both sides
        return create_session(path, optimization=level, disabled_optimizers=())[0]

    same = "basic" if style == "Runtime" else "all"
    onnx_same, onnx_all, ort_model = session(onnx_path, same), session(onnx_path, "all"), session(ort_path, same)
    rng = np.random.default_rng(seed)
    worst, scaled, vs_all, shapes = 0.0, 0.0, 0.0, []
    for sizes in check_shapes_for(manifest):
        for padded in (False, True):
            feeds = example_inputs(manifest.inputs, sizes, rng, padded=padded, global_tokens=global_slots(manifest))
            got = ort_model.run(None, feeds)
            for want, have in zip(onnx_same.run(None, feeds), got):
                worst = max(worst, max_abs(want, have))
                scaled = max(scaled, max_abs(want, have) / max(1.0, float(np.abs(want).max(initial=0.0))))
            vs_all = max([vs_all] + [max_abs(x, y) for x, y in zip(onnx_all.run(None, feeds), got)])
        shapes.append(",".join(f"{k}={v}" for k, v in sizes.items()))
    return Check("model.ort vs model.onnx (x86 onnxruntime)", scaled <= ATOL,
                 f"max abs {worst:.3g} <= {ATOL:g} x max(1, |output|) at {'; '.join(shapes)}, padded and unpadded "
                 f"({vs_all:.3g} against the fully optimized .onnx)",
                 {"max_abs": worst, "atol": ATOL, "max_abs_vs_fully_optimized": vs_all, "shapes": shapes})


def required_ops(config: Path) -> dict[str, list[str]]:
    """required_operators.config as {domain;opset: [ops]}."""
    out = {}
    for line in config.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            domain, opset, ops = line.split(";", 2)
            out[f"{domain};{opset}"] = sorted(ops.split(","))
    return out


def minimum_onnxruntime(manifest: Manifest, ops: dict[str, list[str]], repacked: list[dict] = ()) -> str:
    """The oldest onnxruntime mobile release that has a kernel for every op of the graph we know of."""
    needs = ["1.14"]  # opset 18 (the unfused export) is read from onnxruntime 1.14 on
    if any({"Attention", "RotaryEmbedding"} & set(names) for key, names in ops.items() if key.startswith("ai.onnx;")):
        needs.append(ATTENTION_MIN_ORT)
    contrib = {name for key, names in ops.items() if key.startswith("com.microsoft;") for name in names}
    if "GatherBlockQuantized" in contrib:  # a .ort holds no 4-bit tensors: its tables are uint8 nibbles (`bits=4`)
        needs.append(PACKED_TABLES_MIN_ORT)
    if "MatMulNBits" in contrib:
        needs.append(MATMUL_NBITS_MIN_ORT)
    needs += [t["min_onnxruntime"] for t in repacked]  # ort_tables.py: some layouts were misread before 1.27
    return max(needs, key=lambda v: tuple(map(int, v.split("."))))


def dynamic_axes(manifest: Manifest) -> list[str]:
    """The named axes of the inputs, in order: after --fixed-shape, the ones left dynamic."""
    out: list[str] = []
    for spec in manifest.inputs:
        out += [d for d in spec.shape if isinstance(d, str) and d not in out]
    return out


def example_fixed(manifest: Manifest, fixed: dict[str, int] | None) -> str:
    """A --fixed-shape value that fixes every axis: the sizes given, batch 1, other axes 128 within their limits."""
    parts = [f"{a}={n}" for a, n in (fixed or {}).items()]
    for axis in dynamic_axes(manifest):
        hi = manifest.axes.get(axis, {}).get("max")
        parts.append(f"{axis}={1 if axis == 'batch' else min(128, int(hi)) if hi else 128}")
    return ",".join(parts)


def desktop_example(manifest: Manifest, fixed: dict[str, int] | None, has_tokenizer: bool) -> str:
    """An `edgeformer run` line that fits the folder's shape (texts are padded to a fixed shape; ids are not)."""
    if has_tokenizer:
        return '`edgeformer run DIR --text "a text to try"`'
    seq = (fixed or {}).get("seq")
    if seq is None:
        return '`edgeformer run DIR --ids "5 17 42"`'
    return f'`edgeformer run DIR --ids "{" ".join(str(5 + i % 40) for i in range(int(seq)))}"` ({seq} ids: the length is fixed)'


def _readme(target: str, manifest: Manifest, coverage: list[dict[str, Any]], min_ort: str, style: str,
            repacked: list[dict], opt: DeployOptions, has_tokenizer: bool) -> str:
    names = ", ".join(s.name for s in manifest.inputs)
    cov = "\n".join(f"| {c['provider']} | {c['supported_nodes']}/{c['nodes']} | {c['partitions']} | "
                    f"{', '.join(c['unsupported_ops']) or '-'} | {c['verdict']} |" for c in coverage)
    runtime_opt = ("\nThis graph was converted with the 'Runtime' optimization style for NNAPI/CoreML: set the session "
                   "option `session.enable_saved_runtime_optimizations` to `1` so the CPU replays the saved "
                   "optimizations for the nodes those providers do not take.\n") if style == "Runtime" else ""
    shapes = "; ".join(f"`{s.name}` {tuple(s.shape)}" for s in manifest.inputs)
    tables = ", ".join(f"`{t['table']}` ({t['from']})" for t in repacked)
    tables = (f"- The ORT format has no 4-bit tensor type: the embedding table {tables} is stored as uint8 bytes of two\n"
              f"  4-bit values (`GatherBlockQuantized` with `bits=4`, onnxruntime {minimum_onnxruntime(manifest, {}, repacked)} on). "
              "The numbers are the bundle's;\n"
              "  deploy compared model.ort with the bundle's own graph (manifest.json, deploy.checks).\n") if repacked else ""
    int4_runtime = ("- The int4 weights (`MatMulNBits`) are saved with the `weight_prepacked` attribute, which onnxruntime reads\n"
                    f"  from {MATMUL_NBITS_MIN_ORT} on (older releases refuse the file: \"Unrecognized attribute\").\n"
                    ) if min_ort == MATMUL_NBITS_MIN_ORT else ""
    fixed = opt.fixed_shape or {}
    dynamic = dynamic_axes(manifest)
    if not dynamic:
        shape_note = ("The shapes are fixed (`--fixed-shape`), as NNAPI and CoreML need: the runtime refuses any other "
                      "shape, so pad every input to them.")
    elif fixed:
        shape_note = (f"Axis {', '.join(dynamic)} is still dynamic: NNAPI and CoreML take few nodes of a graph with a "
                      f"dynamic axis; fix every axis (`--fixed-shape {example_fixed(manifest, fixed)}`).")
    else:
        shape_note = (f"Dynamic shapes keep most nodes off NNAPI and CoreML; `--fixed-shape {example_fixed(manifest, fixed)}` "
                      "makes the static-shape variant they need (the runtime then refuses any other shape).")
    desktop = desktop_example(manifest, fixed, has_tokenizer)
    if target == "android":
        install = (f"Gradle: `implementation 'com.microsoft.onnxruntime:onnxruntime-android:{min_ort}.0'` (or newer). "
                   "Create the session with `OrtSession.SessionOptions().addNnapi()` to try NNAPI; the CPU runs the rest.")
    else:
        install = (f"CocoaPods: `pod 'onnxruntime-objc', '>= {min_ort}.0'` (or `onnxruntime-c`). "
                   "Append the CoreML execution provider (`ORTCoreMLExecutionProviderOptions`) to try CoreML; the CPU runs the rest.")
    return f"""## Run it on {'Android' if target == 'android' else 'iOS'}

{install}
Load `model.ort`, feed {names} (int64 ids and mask; shapes {shapes}), read the outputs above.

- The minimum runtime is onnxruntime {min_ort} (`onnxruntime-android` / `onnxruntime-objc`). The CPU kernel of
  the opset-23 `Attention` op arrived in onnxruntime 1.23; the discontinued reduced `onnxruntime-mobile`
  package (last release 1.18) cannot run graphs with it. For an older runtime, export with
  `edgeformer export CKPT --attention unfused` (opset 18) and deploy that bundle.
{int4_runtime}- A reduced onnxruntime build with only this graph's operators: `./build.sh --android --minimal_build
  --include_ops_by_config required_operators.config` (or `--ios`), from onnxruntime's sources.
- On a desktop the folder runs as any bundle: {desktop}, `edgeformer verify DIR` or `runtime.load(DIR)`.
{tables}{runtime_opt}
Coverage of the mobile execution providers (onnxruntime's usability checker; `coverage.json`):

| provider | nodes taken | partitions | falls back to CPU | verdict |
| --- | --- | --- | --- | --- |
{cov}

{shape_note}
"""
