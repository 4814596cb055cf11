"""The tensorrt and jetson deploy targets, and the runtime's engine loader.

Without TensorRT or a GPU (these machines): profiles from axes, precision plans, every refusal (one
line, exit 2, nothing written), the version/GPU refusal of an engine folder before TensorRT reads it,
and the missing-TensorRT/GPU messages. With both: a real build and run (test_real_engine_*).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner

from edgeformer import runtime
from edgeformer.cli.main import cli
from edgeformer.deploy import DeployError, DeployOptions, deploy
from edgeformer.deploy import tensorrt as dt
from edgeformer.runtime import tensorrt as rt
from edgeformer.runtime.bundle import Manifest, write_manifest
from edgeformer.runtime.errors import BundleError


@pytest.fixture(scope="module")
def unfused_bundle(tmp_path_factory, encoder_ckpt):
    from edgeformer.export import export_bundle

    return export_bundle(encoder_ckpt, tmp_path_factory.mktemp("unfused") / "bundle", attention="unfused")


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Make `import tensorrt` fail here even on a machine that has it."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def fake_cuda(monkeypatch, devices=1, cc=(8, 9), count_error=0):
    """A stand-in for cuda-python's runtime module: enough for gpu_info, nothing else."""
    props = types.SimpleNamespace(name=b"Fake GPU\0", major=cc[0], minor=cc[1], totalGlobalMem=8 << 30)
    mod = types.SimpleNamespace(
        cudaGetDeviceCount=lambda: (count_error, devices),
        cudaGetDevice=lambda: (0, 0),
        cudaGetDeviceProperties=lambda d: (0, props),
    )
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = mod
    pkg = types.ModuleType("cuda")
    pkg.bindings = bindings
    monkeypatch.setitem(sys.modules, "cuda", pkg)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", mod)


def fake_tensorrt(monkeypatch, version="10.14.1.48"):
    """A `tensorrt` module with a version and nothing else: touching any TensorRT API would fail."""
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    monkeypatch.setitem(sys.modules, "tensorrt", mod)


def cli_deploy(*args):
    return CliRunner().invoke(cli, ["deploy", *map(str, args)])


def one_line_exit_2(result):
    assert result.exit_code == 2, result.output
    err = result.stderr if hasattr(result, "stderr") else result.output
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ------------------------------------------------------------------------------------------- profiles


def test_profile_defaults_cover_the_bundles_axes(encoder_bundle):
    m = encoder_bundle.manifest
    assert m.axes["seq"] == {"min": 1, "max": 64} and "max" not in m.axes["batch"]
    axes = dt.axis_profile(m)
    assert axes == {"batch": (1, 1, dt.DEFAULT_MAX_BATCH), "seq": (1, 64, 64)}  # opt seq = min(128, max)
    shapes = dt.profile_from_axes(m)
    assert set(shapes) == {s.name for s in m.inputs}
    assert shapes["input_ids"] == ((1, 1), (1, 64), (32, 64))


def test_profile_opt_seq_is_128_when_the_axis_is_longer(encoder_bundle):
    m = dataclasses.replace(encoder_bundle.manifest, axes={"batch": {"min": 1, "max": 8}, "seq": {"min": 1, "max": 512}})
    assert dt.axis_profile(m) == {"batch": (1, 1, 8), "seq": (1, 128, 512)}  # a batch max in the manifest is kept


def test_profile_overrides_and_their_errors(encoder_bundle):
    m = encoder_bundle.manifest
    axes = dt.axis_profile(m, {"seq": (8, 32, 48), "batch": (1, 4, 8)})
    assert axes == {"batch": (1, 4, 8), "seq": (8, 32, 48)}
    assert dt.profile_from_axes(m, {"seq": (8, 32, 48)})["attention_mask"] == ((1, 8), (1, 32), (32, 48))
    with pytest.raises(DeployError, match=r"names axis 'tokens'; this bundle's axes are: batch, seq"):
        dt.axis_profile(m, {"tokens": (1, 2, 3)})
    with pytest.raises(DeployError, match=r"seq=1:32:100 is outside the bundle's seq range \[1, 64\]"):
        dt.axis_profile(m, {"seq": (1, 32, 100)})
    with pytest.raises(DeployError, match="MIN <= OPT <= MAX"):
        dt.axis_profile(m, {"seq": (16, 8, 32)})


def test_profile_needs_a_maximum_for_non_batch_axes(encoder_bundle):
    m = dataclasses.replace(encoder_bundle.manifest, axes={"batch": {"min": 1}, "seq": {"min": 1}})
    with pytest.raises(DeployError, match="axis 'seq' has no maximum.*--profile seq=MIN:OPT:MAX"):
        dt.axis_profile(m)
    assert dt.axis_profile(m, {"seq": (1, 64, 256)})["seq"] == (1, 64, 256)


def test_check_cases_stay_inside_the_profile():
    axes = {"batch": (1, 1, 32), "seq": (1, 128, 512)}
    cases = dt.check_cases(axes)
    assert cases[0] == {"batch": 1, "seq": 128} and {"batch": 32, "seq": 512} in cases and {"batch": 1, "seq": 1} in cases
    for c in cases:
        assert all(axes[a][0] <= v <= axes[a][2] for a, v in c.items())
    assert len(cases) == len({tuple(sorted(c.items())) for c in cases})


# ------------------------------------------------------------------------------------------ precision


def with_recipe(manifest: Manifest, recipe: str | None) -> Manifest:
    return dataclasses.replace(manifest, quantization={"recipe": recipe} if recipe else None)


def test_precision_plans(encoder_bundle):
    m = encoder_bundle.manifest
    fp32 = dt.precision_plan(m, "fp32")
    assert fp32["cleared_flags"] == ["TF32"] and not fp32["builder_flags"] and not fp32["strongly_typed"]
    fp16 = dt.precision_plan(m, "fp16")
    assert fp16["builder_flags"] == ["FP16", "OBEY_PRECISION_CONSTRAINTS"] and not fp16["strongly_typed"]
    assert fp16["float32_layers"] == ["NORMALIZATION", "SOFTMAX"]
    int8 = dt.precision_plan(with_recipe(m, "int8-static"), "int8")
    assert int8["strongly_typed"] and int8["builder_flags"] == [] and int8["calibrator"] is None
    half = dt.precision_plan(with_recipe(m, "fp16"), "fp16")
    assert half["strongly_typed"] and not half["builder_flags"]
    assert fp32["tolerance"]["rel"] < fp16["tolerance"]["rel"] < int8["tolerance"]["rel"]


@pytest.mark.parametrize("recipe,precision,match", [
    (None, "int8", "--precision int8 needs an int8-static bundle .*this bundle is float32"),
    ("int8-dynamic", "int8", "needs an int8-static bundle .*this bundle is int8-dynamic"),
    ("int8-dynamic", "fp16", "TensorRT cannot run an int8-dynamic bundle"),
    ("int4", "fp16", "TensorRT cannot run an int4 bundle"),
    ("int8-static", "fp16", "is int8-static .*deploy it with --precision int8"),
    ("fp16", "fp32", "deploy it with --precision fp16"),
    (None, "bf16", "unknown precision 'bf16'"),
])
def test_precision_refusals(encoder_bundle, recipe, precision, match):
    with pytest.raises(DeployError, match=match):
        dt.precision_plan(with_recipe(encoder_bundle.manifest, recipe), precision)


# ------------------------------------------------------------------------------------ engine records


def test_check_engine_compatible():
    record = {"version": "10.3.0.30", "compute_capability": "8.7", "gpu": "Orin", "target": "jetson"}
    rt.check_engine_compatible(record, "10.3.0.30", "8.7")  # same TensorRT, same GPU: fine
    with pytest.raises(BundleError) as e:
        rt.check_engine_compatible(record, "10.14.1.48", "8.9")
    msg = str(e.value)
    assert "\n" not in msg
    assert "built with TensorRT 10.3.0.30 for compute capability 8.7 (Orin)" in msg
    assert "this machine has TensorRT 10.14.1.48 and a GPU of compute capability 8.9" in msg
    assert "TensorRT version and GPU" in msg and "edgeformer deploy BUNDLE --target jetson" in msg
    with pytest.raises(BundleError, match="a different GPU:"):
        rt.check_engine_compatible(record, "10.3.0.30", "8.6")
    with pytest.raises(BundleError, match="a different TensorRT version:"):
        rt.check_engine_compatible(record, "10.3.1", "8.7")


def test_version_tuple():
    assert rt.version_tuple("10.3.0.30") == (10, 3, 0, 30)
    assert rt.version_tuple("10.14.1.post1") == (10, 14, 1)
    assert rt.version_tuple("10.14.1.post1")[:2] >= dt.ATTENTION_MIN_TRT > rt.version_tuple("10.3.0")[:2]


def fake_engine_folder(src, dst, record: dict | None) -> str:
    """A deployment folder of `src` whose model.engine is junk: a loader that reached TensorRT would fail."""
    shutil.copytree(src, dst)
    (dst / "model.engine").write_bytes(b"not an engine")
    m = runtime.open_bundle(dst).manifest
    m.graph = "model.engine"
    m.deploy = {"target": "jetson", **({"tensorrt": record} if record is not None else {})}
    write_manifest(dst, m)
    return str(dst)


def test_runtime_refuses_an_engine_of_another_tensorrt_and_gpu(unfused_bundle, tmp_path, monkeypatch):
    folder = fake_engine_folder(unfused_bundle.path, tmp_path / "orin",
                                {"version": "10.3.0.30", "compute_capability": "8.7", "gpu": "Orin"})
    fake_tensorrt(monkeypatch, "10.14.1.48")  # no Runtime: the loader must refuse before deserializing
    fake_cuda(monkeypatch, cc=(8, 9))
    with pytest.raises(BundleError) as e:
        runtime.load(folder)
    msg = str(e.value)
    assert "\n" not in msg and "model.engine was built with TensorRT 10.3.0.30 for compute capability 8.7" in msg
    assert "TensorRT 10.14.1.48 and a GPU of compute capability 8.9" in msg and "--target jetson" in msg
    result = CliRunner().invoke(cli, ["run", folder, "--ids", "5 17 42"])
    assert "was built with TensorRT 10.3.0.30" in one_line_exit_2(result)


def test_runtime_names_what_is_missing(unfused_bundle, tmp_path, monkeypatch):
    folder = fake_engine_folder(unfused_bundle.path, tmp_path / "eng",
                                {"version": "10.3.0.30", "compute_capability": "8.7"})
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(rt.TensorRTUnavailable) as e:
        runtime.load(folder)
    msg = str(e.value)
    assert "\n" not in msg and "is a TensorRT engine (TensorRT 10.3.0.30, compute capability 8.7)" in msg
    assert "TensorRT is not installed (pip install 'edgeformer[tensorrt]'; on a Jetson it comes with JetPack)" in msg

    fake_tensorrt(monkeypatch, "10.3.0.30")
    fake_cuda(monkeypatch, devices=0, count_error=100)
    with pytest.raises(rt.TensorRTUnavailable, match=r"no NVIDIA GPU is visible to CUDA \(100\)"):
        runtime.load(folder)

    fake_tensorrt(monkeypatch, "8.6.2.3")  # JetPack 6.0
    with pytest.raises(rt.TensorRTUnavailable, match=r"TensorRT 8.6.2.3 is installed; edgeformer needs TensorRT 10.0 or later"):
        runtime.load(folder)


def test_runtime_refuses_an_engine_without_a_record(unfused_bundle, tmp_path, monkeypatch):
    folder = fake_engine_folder(unfused_bundle.path, tmp_path / "eng", None)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BundleError, match="has no deploy.tensorrt record"):
        runtime.load(folder)


def test_runtime_layer_stays_torch_and_onnx_free():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(rt.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {n for n in names if n.split(".")[0] in ("torch", "onnx", "onnxruntime")}


# ------------------------------------------------------------------------------------------ refusals


def test_float_bundle_for_int8_is_refused_even_without_tensorrt(encoder_bundle, tmp_path, no_tensorrt):
    out = tmp_path / "trt"
    line = one_line_exit_2(cli_deploy(encoder_bundle.path, "--target", "tensorrt", "--out", out, "--precision", "int8"))
    assert "--precision int8 needs an int8-static bundle" in line and "float32" in line
    assert not out.exists() and not list(tmp_path.iterdir())


def test_missing_tensorrt_is_one_line_and_writes_nothing(unfused_bundle, tmp_path, no_tensorrt):
    out = tmp_path / "trt"
    line = one_line_exit_2(cli_deploy(unfused_bundle.path, "--target", "tensorrt", "--out", out))
    assert "TensorRT is not installed (pip install 'edgeformer[tensorrt]'; on a Jetson it comes with JetPack)" in line
    assert "run this on the device that will use the engine, see docs/jetson.md" in line
    assert not out.exists() and not list(tmp_path.iterdir())


def test_missing_gpu_is_one_line(unfused_bundle, tmp_path, monkeypatch):
    fake_tensorrt(monkeypatch, "10.14.1.48")
    fake_cuda(monkeypatch, devices=0, count_error=100)
    out = tmp_path / "trt"
    line = one_line_exit_2(cli_deploy(unfused_bundle.path, "--target", "tensorrt", "--out", out))
    assert "no NVIDIA GPU is visible to CUDA" in line and "docs/jetson.md" in line
    assert not out.exists()


def test_fused_bundle_needs_tensorrt_10_14(encoder_bundle, tmp_path, monkeypatch):
    assert encoder_bundle.manifest.attention.kind == "fused"
    fake_tensorrt(monkeypatch, "10.3.0.30")
    fake_cuda(monkeypatch)
    with pytest.raises(DeployError, match="reads only from 10.14 on; this machine has TensorRT 10.3.0.30"):
        deploy(encoder_bundle.path, "tensorrt", tmp_path / "trt", DeployOptions())
    assert not (tmp_path / "trt").exists()


def test_jetson_refuses_a_fused_bundle(encoder_bundle, tmp_path, no_tensorrt, monkeypatch):
    out = tmp_path / "orin"
    line = one_line_exit_2(cli_deploy(encoder_bundle.path, "--target", "jetson", "--out", out))
    assert "fused Attention nodes" in line and "JetPack 6.2 ships TensorRT 10.3" in line
    assert "--attention unfused" in line and "--trt-attention" in line
    # with --trt-attention the fused graph is accepted; this machine is no Jetson, and says so
    line = one_line_exit_2(cli_deploy(encoder_bundle.path, "--target", "jetson", "--out", out, "--trt-attention"))
    assert "this machine is not a Jetson" in line
    # on a board without TensorRT: the missing tool
    monkeypatch.setattr(dt, "is_jetson", lambda: True)
    line = one_line_exit_2(cli_deploy(encoder_bundle.path, "--target", "jetson", "--out", out, "--trt-attention"))
    assert "TensorRT is not installed" in line
    assert not out.exists()


def test_jetson_takes_an_unfused_bundle_up_to_the_missing_tool(unfused_bundle, tmp_path, no_tensorrt, monkeypatch):
    monkeypatch.setattr(dt, "is_jetson", lambda: True)
    line = one_line_exit_2(cli_deploy(unfused_bundle.path, "--target", "jetson", "--out", tmp_path / "o",
                                      "--profile", "seq=1:32:64"))
    assert "TensorRT is not installed" in line


def test_bad_profile_is_refused_before_the_tools(unfused_bundle, tmp_path, no_tensorrt):
    line = one_line_exit_2(cli_deploy(unfused_bundle.path, "--target", "tensorrt", "--out", tmp_path / "o",
                                      "--profile", "seq=1:32:4096"))
    assert "outside the bundle's seq range [1, 64]" in line


def test_kv_cache_bundle_is_refused(cached_decoder, tmp_path, no_tensorrt):
    _, bundle = cached_decoder
    line = one_line_exit_2(cli_deploy(bundle.path, "--target", "tensorrt", "--out", tmp_path / "o"))
    assert "key/value-cache decoder bundle" in line
    assert not (tmp_path / "o").exists()


def test_contrib_ops_are_refused(unfused_bundle, tmp_path, no_tensorrt):
    import onnx

    src = tmp_path / "contrib"
    shutil.copytree(unfused_bundle.path, src)
    model = onnx.load(str(src / "model.onnx"))
    node = next(n for n in model.graph.node if n.op_type == "Gelu" or n.op_type == "Erf")
    node.domain = "com.microsoft"
    onnx.save(model, str(src / "model.onnx"))
    write_manifest(src, runtime.open_bundle(src, verify=False).manifest)
    line = one_line_exit_2(cli_deploy(src, "--target", "tensorrt", "--out", tmp_path / "o"))
    assert "onnxruntime contrib ops (com.microsoft." in line


# ----------------------------------------------------------------------------------- check arithmetic


def test_compare_outputs_ignores_padding_and_scales(encoder_bundle):
    m = encoder_bundle.manifest
    mask = np.array([[1, 1, 1], [1, 0, 0]])
    feeds = {"attention_mask": mask}
    specs = [dataclasses.replace(m.outputs[0], name="hidden", shape=("batch", "seq", 4))]
    mm = dataclasses.replace(m, outputs=specs)
    ref = np.ones((2, 3, 4)) * 10
    got = ref.copy()
    got[1, 2] = 1e6  # a padded position: ignored
    got[0, 0, 0] += 0.05  # 0.05 / 10 relative
    metrics = dt.compare_outputs(mm, feeds, {"hidden": ref}, {"hidden": got})["hidden"]
    assert metrics["max_abs"] == pytest.approx(0.05) and metrics["rel"] == pytest.approx(0.005)
    assert dt.passes(metrics, dt.TOLERANCES["fp16"]) and not dt.passes(metrics, dt.TOLERANCES["fp32"])
    assert not dt.passes({"rel": float("nan"), "cosine": 1.0}, dt.TOLERANCES["int8"])


def test_trtexec_command_mirrors_the_plan(encoder_bundle):
    m = encoder_bundle.manifest
    shapes = dt.profile_from_axes(m, {"seq": (1, 32, 64)})
    cmd = dt.trtexec_command("model.onnx", shapes, dt.precision_plan(m, "fp16"))
    assert "--minShapes=input_ids:1x1" in cmd and "--optShapes=input_ids:1x32" in cmd and "--maxShapes=input_ids:32x64" in cmd
    assert "--fp16" in cmd and "--precisionConstraints=obey" in cmd and "--timingCacheFile=timing.cache" in cmd
    assert "--stronglyTyped" in dt.trtexec_command("model.onnx", shapes, dt.precision_plan(with_recipe(m, "int8-static"), "int8"))
    assert "--noTF32" in dt.trtexec_command("model.onnx", shapes, dt.precision_plan(m, "fp32"))


# ------------------------------------------------------------------------- real TensorRT and a GPU


def _real_machine():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (NVIDIA's index; GPU machines only)")
    try:
        rt.import_cudart()
        return rt.gpu_info()
    except rt.TensorRTUnavailable as e:
        pytest.skip(f"no GPU for TensorRT here: {e}")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_engine_builds_runs_and_matches(unfused_bundle, tmp_path, precision):
    gpu = _real_machine()
    out = tmp_path / f"trt-{precision}"
    result = deploy(unfused_bundle.path, "tensorrt", out, DeployOptions(precision=precision, profile={"seq": (1, 16, 64)}))
    assert all(c.passed for c in result.deployment.checks)
    assert {"model.engine", "model.onnx", "timing.cache", "manifest.json", "README.md"} <= {p.name for p in out.iterdir()}
    record = json.loads((out / "manifest.json").read_text())["deploy"]["tensorrt"]
    assert record["compute_capability"] == gpu["compute_capability"] and record["profile"]["seq"] == [1, 16, 64]
    engine = runtime.load(out)
    assert engine.providers == ["TensorRT"]
    cpu = runtime.load(unfused_bundle.path)
    from edgeformer.runtime.inputs import manifest_inputs

    for batch, seq in [(1, 1), (3, 17), (2, 64)]:
        feeds = manifest_inputs(cpu.manifest, batch, seq, seed=batch)
        got, ref = engine(feeds), cpu(feeds)
        for name in ref:
            metrics = dt.compare_outputs(cpu.manifest, feeds, ref, got)[name]
            assert dt.passes(metrics, dt.TOLERANCES[precision]), (name, batch, seq, metrics)
    with pytest.raises(runtime.InputError):  # outside the profile: refused by the manifest's axes
        engine(manifest_inputs(cpu.manifest, 33, 8))


# ------------------------------------------------------------- the plumbing, with a stand-in TensorRT
# A stand-in `tensorrt` whose "engine" is onnxruntime on the same model.onnx, and a stand-in CUDA whose
# "device memory" is host memory. It checks edgeformer's side only: the build's sequence of calls, the
# folder, the record, buffers, shapes and copies of EngineModel. It proves nothing about TensorRT.


def stand_in_tensorrt(monkeypatch, calls: list):
    import ctypes
    import enum

    import onnxruntime as ort

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.14.1.48"
    trt.float32 = "float32"

    class ILogger:
        class Severity(enum.IntEnum):
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self):
            pass

    trt.ILogger = ILogger
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", OBEY_PRECISION_CONSTRAINTS="OBEY", TF32="TF32")
    trt.LayerType = types.SimpleNamespace(NORMALIZATION="norm", SOFTMAX="softmax", MATRIX_MULTIPLY="mm")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.nptype = lambda dtype: dtype

    class Layer:
        def __init__(self, kind, name):
            self.type, self.name, self.precision, self.num_outputs, self.outputs = kind, name, None, 1, {}

        def set_output_type(self, i, t):
            self.outputs[i] = t

    class Network:
        def __init__(self, flags):
            self.flags, self.path = flags, None
            self.layers = [Layer("norm", "ln0"), Layer("mm", "mm0"), Layer("softmax", "sm0")]
            self.num_layers = len(self.layers)

        def get_layer(self, i):
            return self.layers[i]

    class Parser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0

        def parse_from_file(self, path):
            self.network.path = path
            return True

    class Config:
        def __init__(self):
            self.flags, self.cleared, self.profiles, self.cache = set(), set(), [], None

        set_flag = lambda self, f: self.flags.add(f)  # noqa: E731
        clear_flag = lambda self, f: self.cleared.add(f)  # noqa: E731
        add_optimization_profile = lambda self, p: self.profiles.append(p)  # noqa: E731

        def create_timing_cache(self, data):
            return types.SimpleNamespace(serialize=lambda: b"timings:" + bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Profile(dict):
        def set_shape(self, name, lo, opt, hi):
            self[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Builder:
        def __init__(self, logger):
            pass

        create_network = lambda self, flags: Network(flags)  # noqa: E731
        create_builder_config = lambda self: Config()  # noqa: E731
        create_optimization_profile = lambda self: Profile()  # noqa: E731

        def build_serialized_network(self, network, config):
            calls.append({"flags": config.flags, "cleared": config.cleared, "profile": dict(config.profiles[0]),
                          "pinned": {l.name: l.precision for l in network.layers if l.precision}})
            return b"ENGINE" + open(network.path, "rb").read()

    class Context:
        def __init__(self, engine):
            self.engine, self.shapes, self.addr, self.results = engine, {}, {}, None

        def set_input_shape(self, name, shape):
            lo, _, hi = self.engine.profile_of(name)
            self.shapes[name] = tuple(shape)
            return all(a <= s <= b for a, s, b in zip(lo, shape, hi))

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def _inputs(self):
            out = {}
            for i in self.engine.session.get_inputs():
                shape = self.shapes[i.name]
                arr = np.empty(shape, dtype=np.int64)
                ctypes.memmove(arr.ctypes.data, self.addr[i.name], arr.nbytes)
                out[i.name] = arr
            return out

        def get_tensor_shape(self, name):
            self.results = dict(zip(self.engine.outputs, self.engine.session.run(None, self._inputs())))
            return self.results[name].shape

        def execute_async_v3(self, stream):
            for name, value in self.results.items():
                value = np.ascontiguousarray(value)
                ctypes.memmove(self.addr[name], value.ctypes.data, value.nbytes)
            return True

    class Engine:
        def __init__(self, data):
            assert data.startswith(b"ENGINE")
            self.session = ort.InferenceSession(data[len(b"ENGINE"):], providers=["CPUExecutionProvider"])
            self.inputs = [i.name for i in self.session.get_inputs()]
            self.outputs = [o.name for o in self.session.get_outputs()]
            self.num_io_tensors = len(self.inputs) + len(self.outputs)

        def profile_of(self, name):
            return calls[-1]["profile"][name]

        get_tensor_name = lambda self, i: (self.inputs + self.outputs)[i]  # noqa: E731
        get_tensor_mode = lambda self, n: "in" if n in self.inputs else "out"  # noqa: E731
        get_tensor_dtype = lambda self, n: np.int64 if n in self.inputs else np.float32  # noqa: E731
        create_execution_context = lambda self: Context(self)  # noqa: E731

    trt.Builder, trt.OnnxParser = Builder, Parser
    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda data: Engine(bytes(data)))
    monkeypatch.setitem(sys.modules, "tensorrt", trt)

    memory = {}

    def malloc(n):
        buf = ctypes.create_string_buffer(n)
        memory[ctypes.addressof(buf)] = buf
        return 0, ctypes.addressof(buf)

    def memcpy(dst, src, n, kind, stream):
        ctypes.memmove(dst, src, n)
        return (0,)

    fake_cuda(monkeypatch, cc=(8, 9))
    cudart = sys.modules["cuda.bindings.runtime"]
    cudart.cudaStreamCreate = lambda: (0, 7)
    cudart.cudaStreamSynchronize = cudart.cudaStreamDestroy = lambda s: (0,)
    cudart.cudaMalloc, cudart.cudaMemcpyAsync = malloc, memcpy
    cudart.cudaFree = lambda p: (memory.pop(p, None), (0,))[1]
    cudart.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    return memory


def test_build_plumbing_with_a_stand_in_tensorrt(unfused_bundle, tmp_path, monkeypatch):
    calls = []
    memory = stand_in_tensorrt(monkeypatch, calls)
    out = tmp_path / "trt"
    result = CliRunner().invoke(cli, ["deploy", str(unfused_bundle.path), "--target", "tensorrt", "--out", str(out),
                                      "--profile", "seq=1:16:48", "--profile", "batch=1:2:4"])
    assert result.exit_code == 0, result.output
    assert "passed  fp16 engine vs onnxruntime CPU" in result.output
    built = calls[-1]
    assert built["flags"] == {"FP16", "OBEY"} and built["pinned"] == {"ln0": "float32", "sm0": "float32"}
    assert built["profile"]["input_ids"] == ((1, 1), (2, 16), (4, 48))
    assert {p.name for p in out.iterdir()} >= {"model.engine", "model.onnx", "timing.cache", "manifest.json", "README.md",
                                                "tokenizer.json"}
    assert (out / "model.onnx").read_bytes() == (unfused_bundle.path / "model.onnx").read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    rec = manifest["deploy"]["tensorrt"]
    assert manifest["graph"] == "model.engine" and manifest["deploy"]["target"] == "tensorrt"
    assert rec["version"] == "10.14.1.48" and rec["compute_capability"] == "8.9" and rec["gpu"] == "Fake GPU"
    assert rec["profile"] == {"batch": [1, 2, 4], "seq": [1, 16, 48]} and rec["precision"] == "fp16"
    assert manifest["axes"]["seq"] == {"min": 1, "max": 48} and manifest["axes"]["batch"] == {"min": 1, "max": 4}
    readme = (out / "README.md").read_text()
    assert "trtexec --onnx=model.onnx" in readme and "runtime.load" in readme and "edgeformer run" in readme

    engine = runtime.load(out)
    assert engine.providers == ["TensorRT"] and engine.manifest.deploy.target == "tensorrt"
    cpu = runtime.load(unfused_bundle.path)
    from edgeformer.runtime.inputs import manifest_inputs

    for batch, seq in [(1, 1), (3, 17), (4, 48), (2, 5)]:  # buffers grow and are reused
        feeds = manifest_inputs(cpu.manifest, batch, seq, seed=seq)
        got, ref = engine(feeds), cpu(feeds)
        assert set(got) == set(ref)  # fusions differ between the two sessions: float32 rounding only
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-5)
    with pytest.raises(runtime.InputError, match="at most 48"):
        engine(manifest_inputs(cpu.manifest, 1, 49))
    engine.close()
    assert not memory

    # int8 from a float bundle is refused before any build; fp32 clears TF32 and pins nothing
    calls.clear()
    deploy(unfused_bundle.path, "tensorrt", tmp_path / "fp32", DeployOptions(precision="fp32"))
    assert calls[-1]["cleared"] == {"TF32"} and not calls[-1]["pinned"] and not calls[-1]["flags"]
    # with --overwrite the old folder's timing cache seeds the new build
    deploy(unfused_bundle.path, "tensorrt", tmp_path / "fp32", DeployOptions(precision="fp32"), overwrite=True)
    assert json.loads((tmp_path / "fp32" / "manifest.json").read_text())["deploy"]["tensorrt"]["timing_cache_reused"]
