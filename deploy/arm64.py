"""The arm64 target: the bundle as it is, for aarch64 CPUs, checked on emulated aarch64 with --check.

Raspberry Pi 4/5, the Jetson's CPU, phones' CPUs and Graviton run the bundle's model.onnx with the
aarch64 wheel of onnxruntime: there is nothing to convert. What can differ is the arithmetic:
onnxruntime's NEON kernels sum in another order than its x86 AVX ones, and its int8 kernels take
another path on cores with the dot-product extension (sdot/udot: Cortex-A76, A78, Neoverse) than
on cores without it (Cortex-A72: the Raspberry Pi 4). `--check` runs the graph on both kinds of
core under qemu user-mode emulation (deploy/emulator.py) on the same random inputs as onnxruntime
here, and compares every output; then it reruns the folder's test vectors (runtime/vectors.py: the
texts, padded batches and generations the Python runtime answered on x86) with the edgeformer runtime
itself on each emulated core. Emulation gives numerics only: its timings mean nothing.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import edgeformer.runtime
from edgeformer.runtime.bundle import MANIFEST_FILE, TOKENIZER_FILE, Bundle, Manifest
from edgeformer.runtime.compare import max_abs
from edgeformer.runtime.graph_files import save_options, weights_file
from edgeformer.runtime.inputs import axis_sizes, example_inputs, global_slots
from edgeformer.runtime.records import BLOCK_RECIPES
from edgeformer.runtime.sessions import create_session

from . import emulator
from .folder import Check, Deployment, DeployError, DeployOptions, write_folder_vectors
from .int4_levels import float32_activation_levels
from .kinds import refuse_kind

GRAPH = "model.onnx"
# The cores the check emulates: one with the dot-product extension and one without.
CHECK_CPUS = ("cortex-a76", "cortex-a72")
# The largest |aarch64 - x86| allowed, relative to max(1, the output's largest |value|), measured with
# onnxruntime 1.32 on both sides (qemu 7.2, Cortex-A76 and A72; x86: a Xeon with AVX-512 VNNI):
# float32: 1.5e-8 to 7.8e-7 (tiny and small-preset encoders and decoder; about 1e-7 relative, an ulp
#   or two: the NEON and AVX kernels sum in another order). 1e-5 is over 10x that and far below the
#   export parity gate's tolerance: wrong values fail, rounding passes.
FP32_TOL = 1e-5
# int8 (int8-dynamic): 4.5e-5 (tiny) and 2.4e-3 on hidden states of magnitude 4.2 (small preset; 5.7e-4
#   relative), the same on both cores: int8 products sum exactly in int32 on every path, so what differs
#   is float arithmetic around them (the activations' dynamic scales, LayerNorm, Gelu) landing on the other
#   side of an int8 rounding step. int8's own error against float32 on the same inputs is 10x larger
#   (0.027, 6.4e-3 relative): 5e-3 leaves about 9x margin and stays below it, so a broken int8 path fails.
QUANT_TOL = 5e-3
QUANT_TOL_NOTE = ("int8 products sum exactly in int32 on x86 and ARM; float arithmetic around them may land on "
                  "the other side of an int8 rounding step (measured up to 5.7e-4 relative), far less than int8's "
                  "own error against float32")
# int4 (MatMulNBits at accuracy_level 4 quantizes activations to int8 per block, each CPU's kernel its own
#   way): 7.2e-3 on a tiny decoder's logits (Cortex-A76; 4.2e-3 on A72; x86: an EPYC with AVX2) and 5.8e-4
#   on an encoder's hidden states of magnitude 3.8, against int4's own error vs float32 of 6.4e-2 and 9.6e-2.
INT4_TOL = 2e-2
INT4_TOL_NOTE = ("int4's activations are quantized to int8 per block by each CPU's own kernel (accuracy_level 4): "
                 "measured up to 7.2e-3 on logits, a third of this; int4's own error against float32 is 6.4e-2")
# (batch, seq, padded): a single row, a padded batch, and a batch at the longest length.
SHAPES = ((1, 8, False), (3, 24, True), (2, 64, True))
CASE_SEP = "/"

# Run on the guest with this machine's runtime sources on its path (guest_package): the same session
# settings as run_host.
GUEST_SCRIPT = r'''
import json, platform, sys, time
import numpy as np
import onnxruntime as ort
from edgeformer.runtime.sessions import create_session

model, inputs, outputs, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
start = time.perf_counter()
session, _ = create_session(model, threads=threads, disabled_optimizers=())
names = [o.name for o in session.get_outputs()]
data = np.load(inputs, allow_pickle=False)
cases = sorted({k.split("/", 1)[0] for k in data.files})
result = {}
for case in cases:
    feeds = {k.split("/", 1)[1]: data[k] for k in data.files if k.split("/", 1)[0] == case}
    for name, value in zip(names, session.run(None, feeds)):
        result[case + "/" + name] = value
np.savez(outputs, **result)
print(json.dumps({"machine": platform.machine(), "python": platform.python_version(), "numpy": np.__version__,
                  "onnxruntime": ort.__version__, "seconds": time.perf_counter() - start}))
'''


def refuse(bundle: Bundle, target: str, manifest: Manifest, opt: DeployOptions) -> None:
    refuse_kind(bundle, target, manifest)  # deploy/kinds.py
    if opt.check and emulator.qemu_path() is None:
        raise DeployError(f"--check runs the bundle on emulated aarch64 and needs {emulator.QEMU}, which is not "
                          f"installed; {emulator.INSTALL_HINT}")


def copy_graph(bundle: Bundle, work: Path) -> tuple[list[str], dict[str, Any]]:
    """The graph and every other file the bundle lists (external data, a seq2seq encoder), as they are,
    except that an int4 graph is written at accuracy_level 0 (int4_levels.py); returns the files and
    what changed per graph."""
    import onnx

    copied, changed = [], {}
    quantization = bundle.manifest.quantization
    blocks = quantization is not None and quantization.recipe in BLOCK_RECIPES  # others are copied without reading them
    for spec in bundle.manifest.graphs if blocks else ():
        model = onnx.load(str(bundle.path / spec.file))
        levels = float32_activation_levels(model)
        if levels is not None:
            onnx.save(model, str(work / spec.file), **save_options(model, work / spec.file))
            changed[spec.file] = {"matmulnbits_accuracy_level": levels}
            copied += [f for f in (spec.file, weights_file(spec.file)) if (work / f).exists()]
    for rel in bundle.manifest.files:
        if rel in (MANIFEST_FILE, TOKENIZER_FILE) or rel in copied:
            continue
        if any(rel in (g, weights_file(g)) for g in changed):  # written above, its weights with it
            continue
        dst = work / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle.path / rel, dst)
        copied.append(rel)
    if bundle.manifest.graph not in copied:
        raise DeployError(f"{bundle.path} lists no {bundle.manifest.graph}; the arm64 target deploys the ONNX graph")
    return copied, changed


def check_inputs(manifest: Manifest, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    cases = []
    for batch, seq, padded in SHAPES:
        sizes = axis_sizes(manifest, batch, seq)
        cases.append(example_inputs(manifest.inputs, sizes, rng, padded, global_tokens=global_slots(manifest)))
    return cases


def run_host(graph: Path, cases: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The reference: onnxruntime on this machine, one thread and every fusion, as the guest runs it."""
    session, _ = create_session(graph, threads=1, disabled_optimizers=())
    names = [o.name for o in session.get_outputs()]
    return [dict(zip(names, session.run(None, feeds))) for feeds in cases]


def tolerance(manifest: Manifest) -> tuple[float, str]:
    if manifest.quantization and manifest.quantization.recipe in BLOCK_RECIPES:
        return INT4_TOL, f"quantized ({manifest.quantization.recipe}): {INT4_TOL_NOTE}"
    if manifest.quantization:
        return QUANT_TOL, f"quantized ({manifest.quantization.recipe}): {QUANT_TOL_NOTE}"
    return FP32_TOL, "float32: the NEON and x86 kernels sum in another order"


def build(bundle: Bundle, target: str, manifest: Manifest, work: Path, opt: DeployOptions,
          progress: Callable[[str], None]) -> Deployment:
    if manifest.graph != GRAPH:
        raise DeployError(f"{bundle.path}'s graph is {manifest.graph}; the arm64 target deploys {GRAPH}")
    files, graphs = copy_graph(bundle, work)
    if graphs:
        manifest.quantization.accuracy_level = 0  # the folder's int4 multiplies float32 activations (int4_levels.py)
    readme = board_readme(work.name, manifest, checked=opt.check)
    if graphs or opt.check:  # recorded here on x86 on the graph the folder ships (and rerun on each emulated core)
        write_folder_vectors(bundle, work, manifest)
    if not opt.check:
        return Deployment(graph=GRAPH, checks=[], readme=readme,
                          record={"arm64": {"checked": False, "files": files, "graphs": graphs}})
    checks, record, tables = aarch64_check(work / GRAPH, manifest, opt, progress, folder=work)
    record["files"], record["graphs"] = files, graphs
    return Deployment(graph=GRAPH, checks=checks, readme=readme, record={"arm64": record}, tables=tables)


def aarch64_check(graph: Path, manifest: Manifest, opt: DeployOptions, progress: Callable[[str], None],
                  folder: Path | None = None) -> tuple[list[Check], dict[str, Any], list]:
    """Run `graph` on emulated aarch64 cores and on this machine with the same inputs; compare. With
    `folder` (a bundle with vectors.json), also verify its test vectors on each core (guest_vectors)."""
    cache = Path(opt.emulator_root) if opt.emulator_root else emulator.default_cache()
    progress(f"arm64: emulator root in {cache}")
    root = emulator.ensure_root(cache, progress)
    if root.built_s is not None:
        progress(f"arm64: emulator root built in {root.built_s:.0f} s (cached for the next check)")
    cases = check_inputs(manifest, opt.seed)
    host = run_host(graph, cases)
    tol, why = tolerance(manifest)
    per_cpu: dict[str, dict[str, float]] = {}
    scale: dict[str, float] = {}
    guest_info: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    vectors: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="edgeformer-arm64-") as tmp:
        tmp = Path(tmp)
        script = tmp / "check.py"
        script.write_text(GUEST_SCRIPT)
        np.savez(tmp / "inputs.npz", **{f"{i}{CASE_SEP}{k}": v for i, feeds in enumerate(cases) for k, v in feeds.items()})
        for cpu in CHECK_CPUS:
            progress(f"arm64: running {len(cases)} input sets on emulated aarch64 ({cpu}: {emulator.CPUS[cpu].boards})")
            out = tmp / f"out-{cpu}.npz"
            start = time.perf_counter()
            proc = emulator.run_python(root, script, [graph.resolve(), tmp / "inputs.npz", out, "1"], cpu=cpu,
                                       paths=[guest_package(tmp)])
            seconds[cpu] = round(time.perf_counter() - start, 2)
            guest_info = _json_line(proc.stdout) or guest_info
            with np.load(out, allow_pickle=False) as got:
                diffs: dict[str, float] = {}
                for i, ref in enumerate(host):
                    for name, value in ref.items():
                        key = f"{i}{CASE_SEP}{name}"
                        d = max_abs(value, got[key]) if key in got.files else float("inf")
                        diffs[name] = max(diffs.get(name, 0.0), d)
                        finite = np.abs(value[np.isfinite(value)]) if value.dtype.kind == "f" else np.abs(value)
                        scale[name] = max(scale.get(name, 0.0), float(finite.max()) if finite.size else 0.0)
            per_cpu[cpu] = diffs
            if folder is not None:
                progress(f"arm64: rerunning the folder's test vectors with the edgeformer runtime on {cpu}")
                vectors[cpu] = guest_vectors(root, folder, cpu, tmp)
    checks, rows = [], []
    for cpu, diffs in per_cpu.items():
        worst_ratio, worst_name = 0.0, ""
        for name, d in diffs.items():
            limit = tol * max(1.0, scale[name])
            rows.append([cpu, "dotprod" if emulator.CPUS[cpu].dotprod else "no dotprod", name, f"{scale[name]:.3g}",
                         f"{d:.2e}", f"{limit:.1e}", "yes" if d <= limit else "NO"])
            if d / limit >= worst_ratio:
                worst_ratio, worst_name = d / limit, name
        worst = diffs[worst_name] if worst_name else 0.0
        passed = all(d <= tol * max(1.0, scale[n]) for n, d in diffs.items())
        values = {"cpu": cpu, "dotprod": emulator.CPUS[cpu].dotprod, "max_abs": diffs, "output_max": scale,
                  "tolerance": tol, "shapes": [list(s) for s in SHAPES]}
        detail = (f"max abs {worst:.2e} on {worst_name or 'no output'} (tolerance {tol:g} x max(1, |output|)), "
                  f"{len(cases)} input sets, emulated")
        if cpu in vectors:
            passed = passed and vectors[cpu]["passed"]
            values["vectors"] = vectors[cpu]
            detail += f"; test vectors: {vectors[cpu]['summary']}"
        checks.append(Check(f"aarch64 {cpu} vs x86", passed, detail, values))
    record = {"checked": True, "emulated": True, "qemu": root.qemu, "cpus": {c: emulator.CPUS[c].boards for c in CHECK_CPUS},
              "python": guest_info.get("python", root.python), "numpy": guest_info.get("numpy", root.versions.get("numpy")),
              "onnxruntime": guest_info.get("onnxruntime", root.versions.get("onnxruntime")),
              "root": root.record(), "tolerance": {"value": tol, "relative_to": "max(1, max |x86 output|)", "why": why},
              "inputs": {"seed": opt.seed, "shapes": [list(s) for s in SHAPES]},
              "root_built_s": None if root.built_s is None else round(root.built_s, 1), "run_s": seconds,
              "note": "emulated: numerics only; emulation is ~150x slower than a board, so no timings are recorded"}
    tables = [(f"aarch64 (qemu) vs x86 ({manifest.quantization.recipe if manifest.quantization else 'float32'}), "
               f"{len(cases)} input sets, onnxruntime {record['onnxruntime']} on both",
               ["emulated core", "int8 path", "output", "max |x86|", "max abs diff", "tolerance", "ok"], rows)]
    return checks, record, tables


VERIFY_CODE = ("import sys\nfrom edgeformer.runtime.vectors import main\n"
               "sys.exit(0 if main(sys.argv[1:] + ['--json']) in (0, 1) else 2)\n")


def guest_package(tmp: Path) -> Path:
    """A folder for the guest's path holding `edgeformer.runtime` (this machine's sources; numpy,
    onnxruntime and tokenizers are all it imports)."""
    package = tmp / "guest" / "edgeformer"
    if not package.exists():
        package.mkdir(parents=True)
        (package / "runtime").symlink_to(Path(edgeformer.runtime.__file__).resolve().parent)
    return package.parent


def guest_vectors(root: emulator.Root, folder: Path, cpu: str, tmp: Path) -> dict[str, Any]:
    """`python -m edgeformer.runtime.vectors FOLDER` on the emulated `cpu`: this machine's runtime
    sources (numpy, onnxruntime and tokenizers only) on the guest's path. Returns what it reported."""
    proc = emulator.run_python(root, None, [folder.resolve()], cpu=cpu, code=VERIFY_CODE, paths=[guest_package(tmp)])
    report = _json_line(proc.stdout)
    if "cases" not in report:
        raise DeployError(f"the test vectors on emulated aarch64 ({cpu}) gave no report: {proc.stdout.strip()[-200:]}")
    cases = report["cases"]
    ratios = [c["max_abs"] / c["atol"] for c in cases if c["max_abs"] is not None and c["atol"] > 0]
    failed = [c["name"] for c in cases if not c["passed"]]
    summary = (f"{len(cases) - len(failed)} of {len(cases)} cases passed"
               + (f" (failed: {', '.join(failed)})" if failed else "")
               + (f", worst {max(ratios):.2g} x atol" if ratios else "")) if report.get("has_vectors") else "none"
    return {"passed": bool(report["passed"]), "summary": summary, "cases": cases}


def _json_line(text: str) -> dict:
    import json

    for line in reversed(text.splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def board_readme(folder: str, manifest: Manifest, checked: bool) -> str:
    name, ids = "DIR", "5 17 42 8"
    task = manifest.model.task or ""
    lines = ["## On the board (aarch64: Raspberry Pi 4/5, Jetson CPU, Graviton, phones' CPUs)", ""]
    if not checked:
        lines += ["**This folder was not checked on aarch64.** Check it before shipping, either here (emulated "
                  "aarch64, numerics only; needs `qemu-user-static` and `debootstrap`, or run `make board-check`):", "",
                  "    edgeformer deploy BUNDLE --target arm64 --check --out DIR", "",
                  "or on the board itself, against the PyTorch checkpoint the bundle came from "
                  "(`pip install 'edgeformer[torch]'` there):", "",
                  "    edgeformer parity DIR --reference CHECKPOINT", ""]
    else:
        lines += ["Checked on emulated aarch64 (qemu user mode, the cores in the table above): the outputs match "
                  "onnxruntime on x86 within the recorded tolerance. Emulation says nothing about speed: time it on "
                  "the board.", ""]
    lines += ["Install the runtime alone (numpy + onnxruntime; no PyTorch). The bundle's fused `Attention` op "
              "(opset 23) needs onnxruntime >= 1.23, which has aarch64 wheels for Python 3.10+ on glibc >= 2.28 "
              "(Raspberry Pi OS bookworm, Ubuntu 20.04+, JetPack 6):", "",
              "    python3 -m venv ~/edgeformer && . ~/edgeformer/bin/activate",
              "    pip install edgeformer 'onnxruntime>=1.23'", "",
              f"Copy this folder to the board as `{name}`, then:", "",
              f"    edgeformer run {name} --ids \"{ids}\"" + ("    # prints labels" if task == "classification" else ""), ""]
    if TOKENIZER_FILE in manifest.files and manifest.config.get("arch") != "decoder":
        lines += ["With its tokenizer (`pip install edgeformer[text]`):", "",
                  f"    edgeformer run {name} --text \"a sentence to {'classify' if task == 'classification' else 'embed'}\"", ""]
    lines += ["or from Python:", "", "    from edgeformer import runtime",
              f"    model = runtime.load(\"{name}\")",
              "    out = model({\"input_ids\": ids, \"attention_mask\": mask})   # numpy arrays in, numpy arrays out", "",
              "Threads: onnxruntime uses every core by default. On a board that does other work (a camera loop, "
              "a UI) give it fewer (`--threads 2`, `runtime.load(DIR, threads=2)`); on a Raspberry Pi, the big "
              "cores only. Worker threads do not spin between calls by default (battery and heat); pass `--spin` "
              "(`spin=True`) for the lowest latency on back-to-back calls on a dedicated core.", "",
              "Memory: `benchmarks/board_footprint.py` measures the peak resident memory of `edgeformer run` under "
              "`ulimit -v` budgets (512 MB, 1 GB) to size a board."]
    return "\n".join(lines)
