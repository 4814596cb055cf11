"""`edgeformer deploy --target triton`: a Triton model repository, its config.pbtxt read back with the
ModelConfig protobuf that ships in tritonclient and checked field by field against the manifest."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from google.protobuf import text_format

from edgeformer import runtime
from edgeformer.cli.main import cli
from edgeformer.deploy import DeployError, DeployOptions, deploy
from edgeformer.deploy import triton
from edgeformer.runtime.bundle import open_bundle
from edgeformer.runtime.inputs import manifest_inputs

pb2 = triton.model_config_pb2()
TYPES = {"int64": pb2.TYPE_INT64, "float32": pb2.TYPE_FP32, "float16": pb2.TYPE_FP16, "int32": pb2.TYPE_INT32,
         "bool": pb2.TYPE_BOOL}


def read_config(path):
    return text_format.Parse(path.read_text(), pb2.ModelConfig())


def assert_matches_manifest(cfg, name, manifest, max_batch, instances=1, kind=pb2.ModelInstanceGroup.KIND_AUTO):
    assert cfg.name == name
    assert cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == max_batch
    for got, specs in ((cfg.input, manifest.inputs), (cfg.output, manifest.outputs)):
        assert [t.name for t in got] == [s.name for s in specs]
        for t, s in zip(got, specs):
            assert t.data_type == TYPES[s.dtype], s.name
            shape = s.shape[1:] if max_batch else s.shape
            if max_batch:
                assert s.shape[0] == "batch"
            assert list(t.dims) == [d if isinstance(d, int) else -1 for d in shape], s.name
    if max_batch:
        assert cfg.HasField("dynamic_batching")
        assert cfg.dynamic_batching.max_queue_delay_microseconds == triton.MAX_QUEUE_DELAY_US
        assert list(cfg.dynamic_batching.preferred_batch_size) == []
    else:
        assert not cfg.HasField("dynamic_batching")
    assert len(cfg.instance_group) == 1
    assert cfg.instance_group[0].count == instances
    assert cfg.instance_group[0].kind == kind


@pytest.fixture(scope="module")
def encoder_repo(tmp_path_factory, encoder_bundle):
    out = tmp_path_factory.mktemp("triton") / "repo"
    return deploy(encoder_bundle.path, "triton", out), encoder_bundle


def test_encoder_repository_layout_and_config(encoder_repo):
    result, src = encoder_repo
    out = result.path
    name = src.path.name  # "bundle"
    assert result.deployment.graph == f"{name}/1/model.onnx"
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    want = ["README.md", "manifest.json", f"{name}/1/model.onnx", f"{name}/config.pbtxt", "tokenizer.json", "vectors.json"]
    assert files == sorted(want)
    # Triton takes only sub-directories of the repository as models: the one model folder.
    assert [p.name for p in out.iterdir() if p.is_dir()] == [name]
    manifest = open_bundle(src.path).manifest
    assert_matches_manifest(read_config(out / name / "config.pbtxt"), name, manifest, max_batch=8)
    assert (out / name / "1" / "model.onnx").read_bytes() == (src.path / "model.onnx").read_bytes()
    deployed = open_bundle(out).manifest
    assert deployed.graph == f"{name}/1/model.onnx"
    assert deployed.deploy.target == "triton"
    assert deployed.deploy.extra["triton"]["max_batch_size"] == 8 and deployed.deploy.extra["triton"]["kind"] == "KIND_AUTO"
    assert [c["passed"] for c in deployed.deploy.checks] == [True, True, True]
    copy = deployed.deploy.checks[2]["values"]
    assert copy["sha256_equal"] and copy["max_abs"] == 0.0 and copy["sizes"]["batch"] == 8
    readme = (out / "README.md").read_text()
    assert "tritonserver --model-repository=/models" in readme
    assert f'client.infer("{name}"' in readme and 'httpclient.InferInput("input_ids", feeds["input_ids"].shape, "INT64")' in readme
    assert "25.08" in readme and "--attention unfused" in readme
    client = readme.split("```python\n")[1].split("```")[0]
    compile(client, "README.md", "exec")  # the client example is valid Python


def test_runtime_loads_the_repository(encoder_repo):
    result, src = encoder_repo
    feeds = manifest_inputs(src.manifest, batch=3, seq=11, seed=1)
    a, b = runtime.load(src.path)(feeds), runtime.load(result.path)(feeds)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_decoder_options_name_batch_instances_device(tmp_path, decoder_bundle):
    opt = DeployOptions(name="tiny-lm_v1.0", max_batch=4, instances=3, device="cpu")
    result = deploy(decoder_bundle.path, "triton", tmp_path / "repo", opt)
    cfg = read_config(tmp_path / "repo" / "tiny-lm_v1.0" / "config.pbtxt")
    assert_matches_manifest(cfg, "tiny-lm_v1.0", open_bundle(decoder_bundle.path).manifest, max_batch=4,
                            instances=3, kind=pb2.ModelInstanceGroup.KIND_CPU)
    assert list(cfg.output[0].dims) == [-1, 300]  # logits (batch, seq, vocab)
    assert result.manifest.deploy.checks[2]["values"]["sizes"]["batch"] == 4
    assert not (tmp_path / "repo" / "tokenizer.json").exists()  # the decoder bundle has none


def test_fixed_batch_means_no_batching(tmp_path, encoder_bundle):
    opt = DeployOptions(fixed_shape={"batch": 2, "seq": 16}, device="gpu")
    deploy(encoder_bundle.path, "triton", tmp_path / "repo", opt)
    manifest = json.loads((tmp_path / "repo" / "manifest.json").read_text())
    cfg = read_config(tmp_path / "repo" / "bundle" / "config.pbtxt")
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [2, 16] and list(cfg.output[1].dims) == [2, 16, 32]
    assert cfg.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_GPU
    assert manifest["inputs"][0]["shape"] == [2, 16]


def test_default_name_is_sanitized(tmp_path, encoder_bundle):
    src = tmp_path / "my bundle (v2)"
    shutil.copytree(encoder_bundle.path, src)
    result = deploy(src, "triton", tmp_path / "repo")
    assert result.deployment.graph == "my_bundle__v2_/1/model.onnx"
    assert read_config(tmp_path / "repo" / "my_bundle__v2_" / "config.pbtxt").name == "my_bundle__v2_"


@pytest.mark.parametrize("name", ["", "a/b", "../up", ".hidden", "x" * 129, "manifest.json", "README.md", "név"])
def test_bad_name_refused(tmp_path, encoder_bundle, name):
    with pytest.raises(DeployError, match="--name"):
        deploy(encoder_bundle.path, "triton", tmp_path / "repo", DeployOptions(name=name))
    assert not (tmp_path / "repo").exists()


def test_max_batch_needs_a_batch_axis(tmp_path, encoder_bundle):
    with pytest.raises(DeployError, match="--triton-batch"):
        deploy(encoder_bundle.path, "triton", tmp_path / "repo", DeployOptions(fixed_shape={"batch": 1}, max_batch=4))
    assert not (tmp_path / "repo").exists()


def test_kv_cache_decoder_refused(tmp_path, cached_decoder):
    _, bundle = cached_decoder
    with pytest.raises(DeployError, match="key/value-cache") as e:
        deploy(bundle.path, "triton", tmp_path / "repo")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "repo").exists() and list(tmp_path.iterdir()) == []


def test_config_check_fails_on_a_wrong_field(encoder_bundle):
    manifest = open_bundle(encoder_bundle.path).manifest
    want = triton.expected_config("bundle", manifest, DeployOptions())
    text = triton.config_text(want, manifest)
    assert triton.check_config(text, want).passed
    bad = text.replace("TYPE_INT64", "TYPE_INT32", 1)
    check = triton.check_config(bad, want)
    assert not check.passed and "input" in check.detail
    with pytest.raises(DeployError, match="ModelConfig"):
        triton.check_config(text.replace("max_batch_size", "max_batch"), want)


def test_graph_check_fails_on_a_mismatch(encoder_bundle):
    manifest = open_bundle(encoder_bundle.path).manifest
    want = triton.expected_config("bundle", manifest, DeployOptions())
    got = triton.parsed_config(triton.config_text(want, manifest))
    assert triton.check_graph(encoder_bundle.path / "model.onnx", got).passed
    wrong_dims = json.loads(json.dumps(got))
    wrong_dims["output"][0]["dims"] = [4]  # logits has 3 labels
    assert "logits" in triton.check_graph(encoder_bundle.path / "model.onnx", wrong_dims).detail
    missing = json.loads(json.dumps(got))
    missing["input"] = missing["input"][:1]  # the backend feeds every graph input
    assert not triton.check_graph(encoder_bundle.path / "model.onnx", missing).passed
    unbatched = dict(got, max_batch_size=0)  # dims would then have to be the full shapes
    assert not triton.check_graph(encoder_bundle.path / "model.onnx", unbatched).passed


def test_cli(tmp_path, encoder_bundle, cached_decoder):
    runner = CliRunner()
    out = tmp_path / "repo"
    r = runner.invoke(cli, ["deploy", str(encoder_bundle.path), "--target", "triton", "--out", str(out),
                            "--name", "enc", "--max-batch", "16", "--instances", "2", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "wrote triton deployment" in r.output and "passed" in r.output
    cfg = read_config(out / "enc" / "config.pbtxt")
    assert cfg.max_batch_size == 16 and cfg.instance_group[0].count == 2
    r = runner.invoke(cli, ["deploy", str(encoder_bundle.path), "--target", "triton", "--out", str(tmp_path / "b"),
                            "--name", "a/b"])
    assert r.exit_code == 2 and not (tmp_path / "b").exists()
    r = runner.invoke(cli, ["deploy", str(cached_decoder[1].path), "--target", "triton", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "key/value-cache" in r.output and not (tmp_path / "c").exists()


def test_without_tritonclient_refused_with_the_extra(tmp_path, encoder_bundle, monkeypatch):
    real = triton.importlib.util.find_spec
    monkeypatch.setattr(triton, "_PB2", None)
    monkeypatch.setattr(triton.importlib.util, "find_spec", lambda n, *a: None if n == "tritonclient" else real(n, *a))
    with pytest.raises(DeployError, match=r"edgeformer\[triton\]"):
        deploy(encoder_bundle.path, "triton", tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
