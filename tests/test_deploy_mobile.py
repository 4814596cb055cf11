"""`edgeformer deploy --target android|ios`: the ONNX Runtime format, its checks, fixed shapes, refusals."""

import json

import numpy as np
import pytest

from edgeformer import runtime
from edgeformer.deploy import DeployCheckFailed, DeployError, DeployOptions, deploy
from edgeformer.deploy import mobile
from edgeformer.runtime.inputs import manifest_inputs

from .test_cli import assert_bad_input, cli

FIXED = {"batch": 1, "seq": 32}
TEXTS = ["the quick brown fox", "edge devices run small transformers", "a lazy dog"]


@pytest.fixture(scope="module")
def android(tmp_path_factory, encoder_bundle):
    return deploy(encoder_bundle.path, "android", tmp_path_factory.mktemp("android") / "out")


@pytest.fixture(scope="module")
def ios_fixed(tmp_path_factory, encoder_bundle):
    return deploy(encoder_bundle.path, "ios", tmp_path_factory.mktemp("ios") / "out", DeployOptions(fixed_shape=FIXED))


def test_android_folder_holds_ort_and_reduced_build_config(android, encoder_bundle):
    out = android.path
    assert {p.name for p in out.iterdir()} == {"model.ort", "required_operators.config", "coverage.json", "manifest.json",
                                               "README.md", "tokenizer.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["graph"] == "model.ort" and "model.onnx" not in manifest["files"]
    d = manifest["deploy"]
    assert d["target"] == "android" and d["ort_optimization_style"] == "Fixed" and d["min_onnxruntime"] == "1.23"
    assert "Attention" in d["required_operators"]["ai.onnx;23"]
    check = d["checks"][0]
    assert check["passed"] and check["values"]["max_abs"] <= 1e-6 and len(check["values"]["shapes"]) == 3
    assert d["host"]["int8_class"] and d["tools"]["onnxruntime"]
    readme = (out / "README.md").read_text()
    assert "onnxruntime-android:1.23.0" in readme and "--attention unfused" in readme and "onnxruntime-mobile" in readme


def test_ort_folder_loads_on_desktop_and_matches_the_bundle(android, encoder_bundle):
    a, b = runtime.load(encoder_bundle.path), runtime.load(android.path)
    for batch, seq in ((1, 5), (3, 12)):
        feeds = manifest_inputs(a.manifest, batch, seq, seed=batch)
        for name, value in a(feeds).items():
            np.testing.assert_allclose(b(feeds)[name], value, atol=1e-6, rtol=0)
    np.testing.assert_allclose(b.classify(TEXTS).probabilities, a.classify(TEXTS).probabilities, atol=1e-6)


def test_coverage_report_names_the_cpu_fallbacks(android, ios_fixed):
    nnapi = json.loads((android.path / "coverage.json").read_text())
    assert [c["provider"] for c in nnapi] == ["NNAPI"]
    # Dynamic shapes keep nearly every node off NNAPI; the usability checker says so.
    assert nnapi[0]["dynamic_shape_nodes"] > nnapi[0]["supported_nodes"] and nnapi[0]["verdict"] == "NO"
    coreml = json.loads((ios_fixed.path / "coverage.json").read_text())
    assert [c["provider"] for c in coreml] == ["CoreML NeuralNetwork", "CoreML MLProgram"]
    for c in coreml:
        assert c["dynamic_shape_nodes"] == 0 and c["supported_nodes"] > nnapi[0]["supported_nodes"]
        assert "ai.onnx:Attention" in c["unsupported_ops"] and c["partitions"] >= 1


def test_fixed_shape_variant_refuses_other_shapes(ios_fixed, encoder_bundle):
    m = runtime.load(ios_fixed.path)
    assert m.manifest.deploy.extra["ort_optimization_style"] == "Runtime"
    assert [s.shape for s in m.inputs] == [(1, 32), (1, 32)]
    with pytest.raises(runtime.InputError, match=r"expected 32 .*fixed shapes batch=1, seq=32"):
        m(input_ids=np.ones((1, 8), dtype=np.int64))
    with pytest.raises(runtime.InputError, match=r"expected 1 .*fixed shapes"):
        m(input_ids=np.ones((2, 32), dtype=np.int64))
    # The text API pads to the fixed shape and gives what the dynamic bundle gives.
    ref = runtime.load(encoder_bundle.path).classify(TEXTS).probabilities
    np.testing.assert_allclose(m.classify(TEXTS).probabilities, ref, atol=1e-5)


def test_unfused_bundle_needs_an_older_runtime(tmp_path, encoder_ckpt):
    from edgeformer.export import export_bundle

    unfused = export_bundle(encoder_ckpt, tmp_path / "unfused", attention="unfused")
    r = deploy(unfused.path, "android", tmp_path / "out", DeployOptions(fixed_shape=FIXED))
    assert r.manifest.deploy.extra["min_onnxruntime"] == "1.14"
    assert not any("Attention" in ops for ops in r.manifest.deploy.extra["required_operators"].values())


def test_failed_check_writes_nothing(tmp_path, encoder_bundle, monkeypatch):
    monkeypatch.setattr(mobile, "ATOL", -1.0)  # no difference can pass
    with pytest.raises(DeployCheckFailed, match="model.ort vs model.onnx"):
        deploy(encoder_bundle.path, "android", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fixed, message", [
    ({"batch": 1, "seq": 999}, "outside the bundle's seq range [1, 64]"),
    ({"tokens": 4}, "names axis 'tokens'"),
])
def test_bad_fixed_shape(tmp_path, encoder_bundle, fixed, message):
    with pytest.raises(DeployError, match=message.replace("[", r"\[").replace("]", r"\]")):
        deploy(encoder_bundle.path, "android", tmp_path / "out", DeployOptions(fixed_shape=fixed))
    assert not (tmp_path / "out").exists()


def test_fixed_shape_refuses_a_cache_bundle(tmp_path, cached_decoder):
    with pytest.raises(DeployError, match="key/value-cache"):
        deploy(cached_decoder[1].path, "android", tmp_path / "out", DeployOptions(fixed_shape={"batch": 1}))


def test_cli_deploy_android(tmp_path, encoder_bundle):
    proc = cli("deploy", encoder_bundle.path, "--target", "android", "--out", tmp_path / "a", "--fixed-shape", "batch=1,seq=16")
    assert "NNAPI" in proc.stdout and "passed  model.ort vs model.onnx" in proc.stdout
    assert "wrote android deployment" in proc.stdout
    proc = cli("run", tmp_path / "a", "--ids", "5 6 7", ok=False)
    assert_bad_input(proc, "fixed shapes batch=1, seq=16")


@pytest.mark.parametrize("args, message", [
    (["--target", "phone"], "unknown target 'phone'; expected one of: android, ios, arm64, tensorrt, jetson, triton"),
    (["--target", "ios", "--fixed-shape", "batch=one"], "expected AXIS=SIZE pairs"),
    (["--target", "ios", "--fixed-shape", "seq=0"], "expected AXIS=SIZE pairs with positive sizes"),
])
def test_cli_deploy_bad_input(tmp_path, encoder_bundle, args, message):
    assert_bad_input(cli("deploy", encoder_bundle.path, "--out", tmp_path / "o", *args, ok=False), message)
    assert not (tmp_path / "o").exists()


def test_cli_deploy_refuses_out_over_the_bundle(tmp_path, encoder_bundle):
    assert_bad_input(cli("deploy", encoder_bundle.path, "--target", "android", "--out", encoder_bundle.path,
                         "--overwrite", ok=False), "overlaps the input")
    assert runtime.load(encoder_bundle.path)  # still whole


def test_cached_decoder_for_android(tmp_path, cached_decoder):
    """Generation on a phone: the cache's past and total axes are sized consistently in the check."""
    r = deploy(cached_decoder[1].path, "android", tmp_path / "out")
    values = r.manifest.deploy.checks[0]["values"]
    assert values["max_abs"] <= 1e-6
    assert all(s.endswith(f"total={5 + int(s.split('seq=')[1].split(',')[0])}") for s in values["shapes"])
