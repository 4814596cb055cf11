"""The arm64 deploy target: the folder it writes, its refusals, and (marked `board`) the check on
emulated aarch64, which runs whenever qemu-aarch64-static is installed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeformer import runtime
from edgeformer.cli.main import cli
from edgeformer.deploy import DeployError, DeployOptions, deploy
from edgeformer.deploy import arm64, emulator
from edgeformer.export import export_bundle
from edgeformer.runtime import graph_files
from edgeformer.runtime.inputs import axis_sizes, manifest_inputs

REPO = Path(__file__).resolve().parents[1]
# Shared with `make board-check`: the aarch64 root is built once (about 40 s, needs the Debian and
# PyPI registries) and reused.
ROOT_CACHE = Path(os.environ.get("EDGEFORMER_ARM64_ROOT", REPO / ".cache" / "board" / "arm64-root"))
TEXTS = ["the quick brown fox jumps over the lazy dog", "edge devices run small transformers",
         "a small model on a board", "numbers from the same kernels"] * 5


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory, encoder_bundle):
    from edgeformer.quantize import EvalSet, quantize_bundle

    out = tmp_path_factory.mktemp("arm64q") / "int8"
    quantize_bundle(encoder_bundle.path, out, "int8-dynamic", data=EvalSet(TEXTS), bench_seconds=0.1)
    return out


def no_qemu(monkeypatch, tmp_path):
    """A PATH without qemu-aarch64-static (nor anything else)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))
    assert emulator.qemu_path() is None


# --- no emulator needed ----------------------------------------------------------------------------

def test_check_without_qemu_is_refused_before_writing(encoder_bundle, tmp_path, monkeypatch):
    no_qemu(monkeypatch, tmp_path)
    with pytest.raises(DeployError, match="qemu-aarch64-static.*(make board-check|apt-get install qemu-user-static)") as e:
        deploy(encoder_bundle.path, "arm64", tmp_path / "out", DeployOptions(check=True))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_cli_check_without_qemu_exits_2_with_one_line(encoder_bundle, tmp_path, monkeypatch):
    no_qemu(monkeypatch, tmp_path)
    result = CliRunner().invoke(cli, ["deploy", str(encoder_bundle.path), "--target", "arm64", "--check",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "qemu-aarch64-static" in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_folder_without_check_holds_the_graph_and_runs(encoder_bundle, tmp_path, monkeypatch):
    no_qemu(monkeypatch, tmp_path)  # without --check the target needs nothing
    out = tmp_path / "arm64"
    result = deploy(encoder_bundle.path, "arm64", out)
    src = Path(encoder_bundle.path)
    assert (out / "model.onnx").read_bytes() == (src / "model.onnx").read_bytes()
    assert (out / "tokenizer.json").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["graph"] == "model.onnx" and manifest["deploy"]["target"] == "arm64"
    assert manifest["deploy"]["checks"] == [] and manifest["deploy"]["arm64"]["checked"] is False
    assert result.deployment.checks == []
    feeds = manifest_inputs(runtime.load(src).manifest, batch=3, seq=12, seed=4)
    got, want = runtime.load(out)(feeds), runtime.load(src)(feeds)
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    readme = (out / "README.md").read_text()
    assert "not checked on aarch64" in readme
    assert "--target arm64 --check" in readme and "edgeformer parity" in readme
    assert "pip install edgeformer" in readme and "onnxruntime>=1.23" in readme
    assert "edgeformer run DIR --ids" in readme and "runtime.load" in readme and "--spin" in readme


def test_int4_folder_multiplies_float32_activations(encoder_bundle, tmp_path, monkeypatch):
    """An ARM core quantizes int4's int8 activations its own way (deploy/int4_levels.py): the folder ships level 0."""
    import onnx

    from edgeformer.quantize import quantize_bundle
    from edgeformer.runtime.vectors import verify_vectors

    no_qemu(monkeypatch, tmp_path)
    bundle = quantize_bundle(encoder_bundle.path, tmp_path / "int4", "int4", bench_seconds=0.05).path
    levels = [a.i for n in onnx.load(str(bundle / "model.onnx")).graph.node if n.op_type == "MatMulNBits"
              for a in n.attribute if a.name == "accuracy_level"]
    assert levels and set(levels) == {4}
    out = tmp_path / "arm64"
    deploy(bundle, "arm64", out)
    shipped = onnx.load(str(out / "model.onnx"))
    assert {a.i for n in shipped.graph.node if n.op_type == "MatMulNBits" for a in n.attribute
            if a.name == "accuracy_level"} == {0}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantization"]["accuracy_level"] == 0
    assert manifest["deploy"]["arm64"]["graphs"]["model.onnx"]["matmulnbits_accuracy_level"]["from"] == {"4": len(levels)}
    folder = runtime.load(out)
    assert verify_vectors(folder).passed  # recorded on the graph the folder ships
    feeds = manifest_inputs(folder.manifest, batch=3, seq=12, seed=4)
    want = runtime.load(bundle)(feeds)
    for name, got in folder(feeds).items():  # the same weights; only the activations' rounding differs
        np.testing.assert_allclose(got, want[name], atol=2e-2 * max(1.0, float(np.abs(want[name]).max())))


def test_cli_without_check_writes_the_folder(encoder_bundle, tmp_path):
    out = tmp_path / "arm64"
    result = CliRunner().invoke(cli, ["deploy", str(encoder_bundle.path), "--target", "arm64", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote arm64 deployment" in result.output
    assert runtime.open_bundle(out).manifest.graph == "model.onnx"


def test_check_inputs_cover_padded_batches_and_cache_axes(encoder_bundle):
    m = runtime.open_bundle(encoder_bundle.path).manifest
    cases = arm64.check_inputs(m, seed=0)
    assert [c["input_ids"].shape for c in cases] == [(1, 8), (3, 24), (2, 64)]
    assert any((c["attention_mask"] == 0).any() for c in cases)  # right-padded rows
    m.axes = {"batch": {"min": 1}, "seq": {"min": 1, "max": 8}, "past": {"min": 0, "max": 7}, "total": {"min": 1, "max": 8}}
    sizes = axis_sizes(m, batch=2, seq=64)
    assert sizes["total"] == sizes["past"] + sizes["seq"] <= 8


def test_cpuinfo_has_one_block_per_cpu_and_the_core_features():
    text = emulator.cpuinfo_text(emulator.CPUS["cortex-a76"], 3)
    assert text.count("processor\t:") == 3 and "asimddp" in text and "0xd0b" in text
    assert "asimddp" not in emulator.cpuinfo_text(emulator.CPUS["cortex-a72"], 1)


def test_max_abs_treats_nan_on_one_side_as_a_failure():
    assert arm64.max_abs(np.array([np.nan, 1.0]), np.array([np.nan, 1.5])) == 0.5
    assert arm64.max_abs(np.array([np.nan]), np.array([0.0])) == float("inf")
    assert arm64.max_abs(np.zeros(2), np.zeros(3)) == float("inf")
    # against recorded expectations (test vectors, the browser check) a NaN anywhere fails
    assert arm64.max_abs(np.array([np.nan, 1.0]), np.array([np.nan, 1.5]), nan_equal=False) == float("inf")
    assert arm64.max_abs(np.array([2.0, 1.0]), np.array([2.0, 1.5]), nan_equal=False) == 0.5


# --- emulated aarch64 (qemu) -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def emulator_root():
    if emulator.qemu_path() is None:
        pytest.skip("qemu-aarch64-static is not installed (apt-get install qemu-user-static debootstrap, "
                    "or run 'make board-check')")
    cached = (ROOT_CACHE / f"root-{emulator.SUITE}" / emulator.STAMP).is_file()
    try:
        return emulator.ensure_root(ROOT_CACHE)
    except DeployError as e:
        if cached:
            raise
        pytest.skip(f"the aarch64 emulator root is not cached in {ROOT_CACHE} and could not be built: {e}")


@pytest.mark.board
@pytest.mark.parametrize("kind", ["fp32", "int8", "packed"])
def test_check_on_emulated_aarch64(kind, emulator_root, encoder_ckpt, encoder_bundle, int8_bundle, tmp_path, monkeypatch):
    if kind == "packed":  # onnxruntime's com.microsoft.Attention, which the aarch64 wheel runs too
        bundle = export_bundle(encoder_ckpt, tmp_path / "packed", attention="packed").path
    elif kind == "fp32":  # its weights beside the graph, as a large model's are (runtime/graph_files.py)
        monkeypatch.setattr(graph_files, "EXTERNAL_DATA_BYTES", 4096)
        bundle = export_bundle(encoder_ckpt, tmp_path / "fp32").path
        assert (bundle / "model.onnx.data").is_file()
    else:
        bundle = int8_bundle
    out = tmp_path / f"arm64-{kind}"
    result = deploy(bundle, "arm64", out, DeployOptions(check=True, emulator_root=str(ROOT_CACHE)))
    tol = arm64.QUANT_TOL if kind == "int8" else arm64.FP32_TOL
    checks = result.deployment.checks
    assert [c.values["cpu"] for c in checks] == list(arm64.CHECK_CPUS)
    for c in checks:
        assert c.passed, c.line()
        for name, d in c.values["max_abs"].items():
            assert d <= tol * max(1.0, c.values["output_max"][name]), (name, d)
    manifest = json.loads((out / "manifest.json").read_text())
    rec = manifest["deploy"]
    assert manifest["graph"] == "model.onnx" and [c["passed"] for c in rec["checks"]] == [True, True]
    assert rec["arm64"]["checked"] and rec["arm64"]["emulated"]
    assert rec["arm64"]["onnxruntime"] == emulator_root.versions["onnxruntime"]
    assert rec["arm64"]["python"].startswith("3.") and rec["arm64"]["qemu"].startswith("qemu-aarch64")
    assert rec["arm64"]["tolerance"]["value"] == tol
    assert "not checked" not in (out / "README.md").read_text()
    assert result.deployment.tables and len(result.deployment.tables[0][2]) == 2 * len(manifest["outputs"])
