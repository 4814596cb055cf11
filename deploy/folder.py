"""`edgeformer deploy`: the folder every target writes, and the steps every target shares.

    bundle/ ─► refuse? (one line, exit 2, nothing written) ─► target.build into a temporary folder
            ─► checks (a failed one: exit 1, nothing written) ─► vectors.json ─► README.md + manifest.json ─► rename

The folder is a bundle the runtime can load (`runtime.load(DIR)`): its manifest is the source
bundle's, with `graph` naming the device's artifact, fixed shapes where asked, and a `deploy` record
of the target, the checks with their numbers, the host they ran on and the tools' versions. Its
vectors.json (docs/vectors.md) holds the answers the Python runtime gave on the graph the device loads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeformer.runtime.artifacts import atomic_directory, check_output_dir, package_versions, sha256_file
from edgeformer.runtime.bundle import MANIFEST_FILE, TOKENIZER_FILE, Bundle, Manifest, TensorSpec, open_bundle, write_manifest
from edgeformer.runtime.cpu import describe
from edgeformer.runtime.errors import EdgeformerError, GateFailure
from edgeformer.runtime.vectors import VECTORS_FILE

README_FILE = "README.md"


class DeployError(EdgeformerError):
    """A target that cannot take this bundle, or cannot be built on this machine."""


class DeployCheckFailed(GateFailure):
    """A deployment's check failed (the artifact does not compute what the bundle computes)."""

    def __init__(self, target: str, checks: list["Check"]):
        self.checks = checks
        failed = [c for c in checks if not c.passed]
        super().__init__(f"{target}: check {failed[0].name!r} failed ({failed[0].detail}); nothing was written")

    def report_lines(self) -> list[str]:
        return [c.line() for c in self.checks]


@dataclass
class DeployOptions:
    fixed_shape: dict[str, int] | None = None  # axis -> size: android/ios, tensorrt/jetson, triton (targets.py)
    check: bool | None = None  # arm64: run the parity check on emulated aarch64 (default off); web: in Chromium (default on)
    emulator_root: str | None = None  # arm64: where the aarch64 root and wheels are cached
    precision: str = "fp16"  # tensorrt/jetson: fp32, fp16 or int8 (int8 only from an int8-static bundle)
    profile: dict[str, tuple[int, int, int]] | None = None  # tensorrt/jetson: axis -> (min, opt, max)
    trt_attention: bool = False  # jetson: the board's TensorRT (>= 10.14) parses the fused Attention op
    timing_cache: str | None = None  # tensorrt/jetson: seed the build (default: the replaced folder's timing.cache)
    name: str | None = None  # triton: the model's name in the repository
    max_batch: int | None = None  # triton: dynamic batching's largest batch
    instances: int = 1  # triton: model instances per device
    device: str = "auto"  # triton: instance kind, cpu, gpu or auto
    threads: int | None = None  # web: the threads the page runs on (default: the browser's cores); checked at 1, 2 and this
    seed: int = 0  # the random inputs of the checks

    def __post_init__(self) -> None:
        """Every option of the type and range the CLI would have given, refused in one line otherwise."""
        def fail(name: str, expected: str) -> None:
            raise DeployError(f"DeployOptions.{name}={_show(getattr(self, name))}; expected {expected}")

        is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        for name, lo in (("max_batch", 1), ("threads", 1)):
            value = getattr(self, name)
            if value is not None and not (is_int(value) and value >= lo):
                fail(name, f"an integer >= {lo} or None")
        for name, lo in (("instances", 1), ("seed", 0)):
            if not (is_int(getattr(self, name)) and getattr(self, name) >= lo):
                fail(name, f"an integer >= {lo}")
        for name in ("emulator_root", "timing_cache", "name"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                fail(name, "a string or None")
        if self.check is not None and not isinstance(self.check, bool):
            fail("check", "true, false or None")
        if not isinstance(self.trt_attention, bool):
            fail("trt_attention", "true or false")
        for name in ("precision", "device"):
            if not isinstance(getattr(self, name), str):
                fail(name, "a string")
        if self.fixed_shape is not None and not (isinstance(self.fixed_shape, dict)
                                                  and all(isinstance(k, str) for k in self.fixed_shape)):
            fail("fixed_shape", "a dict of axis name -> size, or None")
        if self.profile is not None and not (
                isinstance(self.profile, dict) and all(isinstance(k, str) and isinstance(v, (tuple, list)) and len(v) == 3
                                                       and all(is_int(x) for x in v) for k, v in self.profile.items())):
            fail("profile", "a dict of axis name -> (min, opt, max) integers, or None")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class Check:
    """One thing verified before the folder was written, with the numbers that decided it."""

    name: str
    passed: bool
    detail: str
    values: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"{'passed' if self.passed else 'FAILED'}  {self.name}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail, **({"values": self.values} if self.values else {})}


@dataclass
class Deployment:
    """What a target built in the work folder."""

    graph: str  # the artifact the device's runtime loads, relative to the folder
    checks: list[Check]
    readme: str  # the commands to run it on the device (markdown)
    record: dict[str, Any] = field(default_factory=dict)  # target-specific facts for the manifest
    tables: list[tuple[str, list[str], list[list[Any]]]] = field(default_factory=list)  # (title, columns, rows) to print


@dataclass
class DeployResult:
    path: Path
    target: str
    manifest: Manifest
    deployment: Deployment

    def to_json(self) -> dict[str, Any]:
        return {"folder": str(self.path), "target": self.target, "graph": self.deployment.graph,
                "deploy": self.manifest.deploy.to_json() if self.manifest.deploy else None,
                "tables": [{"title": t, "columns": c, "rows": r} for t, c, r in self.deployment.tables]}


def deploy(bundle_dir: str | os.PathLike, target: str, out: str | os.PathLike, options: DeployOptions | None = None,
           overwrite: bool = False, progress: Callable[[str], None] = lambda m: None) -> DeployResult:
    """Build the folder for `target` from the bundle at `bundle_dir` into `out`; see the module docstring."""
    from .targets import TARGETS, fixed_shape_targets, packed_attention_targets

    opt = options or DeployOptions()
    if not isinstance(opt, DeployOptions):
        raise DeployError(f"options={_show(opt)}; expected a DeployOptions or None")
    if not isinstance(target, str) or target not in TARGETS:
        raise DeployError(f"unknown target {_show(target)}; expected one of: {', '.join(TARGETS)}")
    if opt.fixed_shape and not TARGETS[target].fixed_shape:
        raise DeployError(f"--fixed-shape is for {', '.join(fixed_shape_targets())}; the {target} target runs the "
                          "bundle's graph with its dynamic shapes")
    bundle = open_bundle(bundle_dir)
    if bundle.manifest.deploy:
        raise DeployError(f"{bundle_dir} is already a {bundle.manifest.deploy.target} deployment; "
                          "deploy the bundle it was made from")
    if bundle.manifest.attention.kind == "packed" and not TARGETS[target].packed_attention:
        raise DeployError(f"{bundle_dir} has the packed attention graph (onnxruntime's com.microsoft.Attention), which "
                          f"{' and '.join(packed_attention_targets())} run and the {target} target does not; export the "
                          "checkpoint with --attention fused for it")
    check_output_dir(out, overwrite, sources=(bundle_dir,))
    previous_cache = Path(out) / "timing.cache"
    if target in ("tensorrt", "jetson") and opt.timing_cache is None and previous_cache.is_file():
        opt = dataclasses.replace(opt, timing_cache=str(previous_cache))  # --overwrite keeps TensorRT's tactic timings
    module = TARGETS[target].load()
    manifest = deployed_manifest(bundle.manifest, opt.fixed_shape)
    module.refuse(bundle, target, manifest, opt)
    with atomic_directory(out, overwrite=overwrite) as work:
        if bundle.tokenizer_path is not None:
            shutil.copy2(bundle.tokenizer_path, work / TOKENIZER_FILE)
        built = module.build(bundle, target, manifest, work, opt, progress)
        if not all(c.passed for c in built.checks):
            raise DeployCheckFailed(target, built.checks)
        manifest.graph = built.graph
        manifest.deploy = {
            "target": target,
            "graph": built.graph,
            "source": {"bundle": Path(bundle_dir).resolve().name,
                       "manifest_sha256": sha256_file(Path(bundle_dir) / MANIFEST_FILE)},
            "fixed_shape": opt.fixed_shape,
            "checks": [c.to_json() for c in built.checks],
            "host": describe(),
            "tools": tool_versions(),
            **built.record,
        }
        if not (work / VECTORS_FILE).exists():  # a target that checked its own (web, arm64 --check) keeps them
            write_folder_vectors(bundle, work, manifest, built.record)
        if hasattr(module, "app_readme"):  # an example app's inputs and answers come from the vectors just written
            built.readme = built.readme.rstrip() + "\n\n" + module.app_readme(target, manifest, work, opt, built.record)
        (work / README_FILE).write_text(folder_readme(target, Path(bundle_dir), manifest, built))
        write_manifest(work, manifest)
    return DeployResult(Path(out), target, manifest, built)


def write_folder_vectors(bundle: Bundle, work: Path, manifest: Manifest, record: dict[str, Any] | None = None) -> None:
    """vectors.json for the folder: recorded by the Python runtime on the graph the device loads.

    The folder loads as a bundle from here on (a manifest is written to load it; the final one is
    written after). A TensorRT engine cannot run where the folder is built: it gets the source
    bundle's vectors, recorded on its ONNX graph, with the engine's own tolerance (copy_onnx_vectors)."""
    if manifest.graph.endswith(".engine"):
        copy_onnx_vectors(bundle, work, ((record or {}).get("tensorrt") or {}).get("tolerance", {}).get("rel"))
        return
    from edgeformer.runtime.model import load
    from edgeformer.runtime.vectors import write_vectors

    write_manifest(work, Manifest.from_json(json.loads(json.dumps(manifest.to_json()))))
    write_vectors(work, load(work, verify=False))  # its files were hashed into that manifest a moment ago
    # hashed again with the new vectors: a check that loads the folder before its final manifest (arm64's
    # guest) must find them listed as they are
    write_manifest(work, Manifest.from_json(json.loads(json.dumps(manifest.to_json()))))


def copy_onnx_vectors(bundle: Bundle, work: Path, relative_tol: float | None) -> None:
    """The source bundle's vectors (none for a bundle made before them), each case's atol widened to
    relative_tol x max(1, its largest expected value): an fp16 or int8 engine is checked within that."""
    if VECTORS_FILE not in bundle.manifest.files:
        return
    data = json.loads((bundle.path / VECTORS_FILE).read_text(encoding="utf-8"))
    for case in data.get("cases", []):
        scale = max(1.0, _largest(case.get("expect")))
        case["atol"] = max(float(case["atol"]), (relative_tol or 0.0) * scale)
    data["recorded"] = {**data.get("recorded", {}), "graph": bundle.manifest.graph,
                        "note": "recorded by onnxruntime on the ONNX graph the engine was built from: the engine "
                                "cannot run on the machine that built this folder; atol widened to the engine's tolerance"}
    (work / VECTORS_FILE).write_text(json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n", encoding="utf-8")


def _largest(value: Any) -> float:
    """The largest |x| over the float tensors of a vectors.json `expect` (still JSON)."""
    if isinstance(value, dict) and set(value) == {"dtype", "shape", "data"}:
        return max((abs(x) for x in value["data"]), default=0.0) if str(value["dtype"]).startswith("float") else 0.0
    if isinstance(value, dict):
        return max((_largest(v) for v in value.values()), default=0.0)
    return 0.0


def deployed_manifest(source: Manifest, fixed: dict[str, int] | None) -> Manifest:
    """A copy of `source` for the deployment, with the named axes fixed to the given sizes."""
    m = Manifest.from_json(json.loads(json.dumps(source.to_json())))
    if not fixed:
        return m
    if m.cache is not None:
        raise DeployError("--fixed-shape cannot fix a key/value-cache bundle: its past length grows every step; "
                          "deploy it with dynamic shapes")
    for axis, size in fixed.items():
        if axis not in m.axes:
            raise DeployError(f"--fixed-shape names axis {axis!r}; this bundle's axes are: {', '.join(m.axes)}")
        if isinstance(size, bool) or not isinstance(size, int):
            raise DeployError(f"--fixed-shape {axis}={size!r}; expected an integer size")
        lo, hi = m.axes[axis].get("min", 1), m.axes[axis].get("max")
        if size < lo or (hi is not None and size > hi):
            raise DeployError(f"--fixed-shape {axis}={size} is outside the bundle's {axis} range "
                              f"[{lo}, {hi if hi is not None else 'any'}]")
    check_fixed_memory(m, fixed)
    fix = lambda spec: dataclasses.replace(spec, shape=tuple(fixed.get(d, d) if isinstance(d, str) else d for d in spec.shape))  # noqa: E731
    m.inputs = [fix(s) for s in m.inputs]
    m.outputs = [fix(s) for s in m.outputs]
    for axis, size in fixed.items():
        m.axes[axis] = {"min": size, "max": size}
    return m


def check_fixed_memory(manifest: Manifest, fixed: dict[str, int]) -> None:
    """Refuse fixed sizes whose one call (the other axes at their largest) is past what this machine gives a
    call: the deployment's checks run at exactly that shape. The batch axis has no maximum in most manifests."""
    sizes = {axis: fixed.get(axis, int(lim.get("max") or lim.get("min", 1))) for axis, lim in manifest.axes.items()}
    check_call_memory(manifest, sizes, "--fixed-shape " + ",".join(f"{k}={v}" for k, v in fixed.items()))


def check_call_memory(manifest: Manifest, sizes: dict[str, int], what: str) -> None:
    """Refuse, before any allocation, a check whose one call of axis `sizes` needs more memory than this
    machine gives a call (runtime.limits: half the memory available)."""
    from edgeformer.runtime.limits import estimate_bytes, limits_for

    budget = limits_for(manifest).budget
    need = estimate_bytes(manifest, sizes)
    if need > budget:
        raise DeployError(f"{what}: one call of that shape needs about {need / 2**20:.0f} MiB, over the "
                          f"{budget / 2**20:.0f} MiB this machine gives a call (half its available memory) to check it")


AXIS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SIZE = re.compile(r"[0-9]{1,30}")  # ASCII digits only (str.isdigit takes '٣'); the manifest bounds the value


def parse_fixed_shape(text: str) -> dict[str, int]:
    """'batch=1,seq=128' -> {'batch': 1, 'seq': 128}; each axis once, sizes in ASCII digits."""
    example = "expected AXIS=SIZE pairs with positive sizes, e.g. batch=1,seq=128"
    if not text.strip():
        raise DeployError(f"--fixed-shape is empty; {example}")
    out: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not item.strip():
            raise DeployError(f"--fixed-shape {text!r} has an empty item between commas; {example}")
        if not sep or not AXIS_NAME.fullmatch(name) or not SIZE.fullmatch(value) or int(value) < 1:
            raise DeployError(f"--fixed-shape {text!r}: {item.strip()!r} is not AXIS=SIZE; {example}")
        if name in out:
            raise DeployError(f"--fixed-shape {text!r} names {name} twice; give each axis once")
        out[name] = int(value)
    return out


def tool_versions() -> dict[str, str]:
    return {"python": platform.python_version(),
            **package_versions(("edgeformer", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "tritonclient"))}


def _shape(spec: TensorSpec) -> str:
    return "(" + ", ".join(str(d) for d in spec.shape) + ")"


def _options(manifest: Manifest) -> str:
    """The deploy options that shaped the folder, as typed on the command line."""
    deploy = manifest.deploy
    fixed = (deploy.get("fixed_shape") if isinstance(deploy, dict) else getattr(deploy, "fixed_shape", None)) or {}
    return f" --fixed-shape {','.join(f'{a}={n}' for a, n in fixed.items())}" if fixed else ""


def folder_readme(target: str, bundle_dir: Path, manifest: Manifest, built: Deployment) -> str:
    """README.md of the folder: what it holds, what was checked, and how to run it on the device."""
    cfg = manifest.config
    lines = [f"# {bundle_dir.resolve().name}: {target} deployment", "",
             f"Made by `edgeformer deploy {bundle_dir.resolve().name} --target {target}{_options(manifest)}` from a bundle "
             f"(task: {manifest.model.task or 'unknown'}, {cfg.get('n_layers', '?')} layers x {cfg.get('d_model', '?')} wide"
             + (f", quantized: {manifest.quantization.recipe}" if manifest.quantization else "") + ").",
             f"The device loads `{built.graph}`; `manifest.json` records every file's sha256 and what was checked.", "",
             "| input | dtype | shape |", "| --- | --- | --- |"]
    lines += [f"| {s.name} | {s.dtype} | {_shape(s)} |" for s in manifest.inputs]
    lines += ["", "| output | dtype | shape |", "| --- | --- | --- |"]
    lines += [f"| {s.name} | {s.dtype} | {_shape(s)} |" for s in manifest.outputs]
    lines += ["", "## Checked before this folder was written", ""]
    lines += [f"- {c.line()}" for c in built.checks] or ["- nothing could be checked on the machine that built it"]
    host = describe()
    lines += [f"", f"Host: {host['machine']}, {host['cpu']} ({host['int8_class']}).", "", built.readme.strip(), ""]
    return "\n".join(lines)
