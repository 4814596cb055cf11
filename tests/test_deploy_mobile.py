"""`edgeformer deploy --target android|ios`: the ONNX Runtime format, its checks, fixed shapes, refusals."""

import json
from pathlib import Path

import numpy as np
import pytest

from edgeformer import runtime
from edgeformer.deploy import DeployCheckFailed, DeployError, DeployOptions, deploy
from edgeformer.deploy import mobile
from edgeformer.runtime.inputs import axis_sizes, example_inputs, global_slots, manifest_inputs

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
                                               "README.md", "tokenizer.json", "vectors.json"}
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


# int4 bundles. The recipe's embedding is a GatherBlockQuantized over an INT4 table (UINT4 and zero points when
# asymmetric); the ORT format has no 4-bit type, so deploy stores the table as uint8 nibbles (deploy/ort_tables.py).
# Measured: the .ort and the int4 bundle agree to the bit (max abs 0); the tolerance allows fusion-order rounding.
INT4_ATOL = 1e-6


def quantized(src, out, **options):
    from edgeformer.quantize import quantize_bundle
    from edgeformer.quantize.recipes import RecipeOptions

    return quantize_bundle(src, out, "int4", options=RecipeOptions(**options), bench_seconds=0.05)


@pytest.fixture(scope="module")
def int4_encoder(tmp_path_factory, encoder_bundle):
    return quantized(encoder_bundle.path, tmp_path_factory.mktemp("int4") / "bundle").path


def four_bit_gathers(path):
    import onnx

    graph = onnx.load(str(path)).graph
    tables = {i.name: i.data_type for i in graph.initializer}
    return [tables.get(n.input[0]) for n in graph.node if n.op_type == "GatherBlockQuantized"]


def as_shipped(bundle):
    """The int4 bundle as a phone's folder computes it: MatMulNBits at accuracy_level 0 (deploy/int4_levels.py),
    its vectors recorded on that graph, written beside the bundle once; the bundle itself when nothing changes."""
    import shutil

    import onnx

    from edgeformer.deploy.int4_levels import float32_activation_levels
    from edgeformer.runtime.bundle import read_manifest, write_manifest
    from edgeformer.runtime.vectors import write_vectors

    bundle = Path(bundle)
    out = bundle.with_name(f"{bundle.name}-level0")
    if out.exists():
        return out
    model = onnx.load(str(bundle / "model.onnx"))
    if float32_activation_levels(model) is None:
        return bundle
    shutil.copytree(bundle, out)
    onnx.save(model, str(out / "model.onnx"))
    manifest = read_manifest(out)
    manifest.quantization.accuracy_level = 0
    write_manifest(out, manifest)
    write_vectors(out, runtime.load(out, verify=False))
    write_manifest(out, manifest)
    return out


def assert_matches(deployed, bundle, shapes=((1, 5), (3, 17), (2, 64), (4, 1)), shipped=True):
    """The deployed folder (or, shipped=False, another bundle) against the bundle as a phone computes it
    (as_shipped), on random ids (and a random cache), padded rows included, at several shapes (a cache's
    past and total sized to agree); returns the largest difference."""
    a, b = runtime.load(as_shipped(bundle) if shipped else bundle), runtime.load(deployed)
    worst = 0.0
    for batch, seq in shapes:
        for padded in (True, False):
            feeds = example_inputs(a.manifest.inputs, axis_sizes(a.manifest, batch, seq),
                                   np.random.default_rng(batch * 100 + seq), padded, global_slots(a.manifest))
            want, got = a(feeds), b(feeds)
            assert set(got) == set(want)
            for name in want:
                np.testing.assert_allclose(got[name], want[name], atol=INT4_ATOL, rtol=0, err_msg=f"{name} at {batch}x{seq}")
                worst = max(worst, float(np.max(np.abs(got[name] - want[name]))))
    return worst


def assert_bundle_vectors_pass(deployed, bundle):
    """The int4 bundle's own test vectors (recorded on its ONNX graph) rerun on the deployed model.ort."""
    from edgeformer.runtime.vectors import read_vectors, verify_case

    cases = read_vectors(runtime.open_bundle(as_shipped(bundle)))["cases"]
    results = [verify_case(runtime.load(deployed), case) for case in cases]
    assert results and all(r.passed for r in results), [r.to_json() for r in results if not r.passed]
    assert all(r.max_abs is None or r.max_abs <= INT4_ATOL for r in results)


def test_int4_encoder_for_android_matches_the_int4_bundle(tmp_path, int4_encoder):
    import onnx

    assert four_bit_gathers(int4_encoder / "model.onnx") == [onnx.TensorProto.INT4]  # what the recipe writes
    r = deploy(int4_encoder, "android", tmp_path / "out")
    d = r.manifest.deploy
    assert [(t["table"], t["from"]) for t in d.extra["repacked_tables"]] == [("model.embed.tok.weight_Q4", "int4")]
    assert d.extra["min_onnxruntime"] == "1.28" and "GatherBlockQuantized" in d.extra["required_operators"]["com.microsoft;1"]
    assert d.checks[0]["passed"] and d.checks[0]["values"]["max_abs"] <= INT4_ATOL
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "stored as uint8 bytes of two\n  4-bit values" in readme and "onnxruntime-android:1.28.0" in readme
    assert "`weight_prepacked` attribute, which onnxruntime reads\n  from 1.28 on" in readme
    assert assert_matches(tmp_path / "out", int4_encoder) <= INT4_ATOL
    a, b = runtime.load(as_shipped(int4_encoder)), runtime.load(tmp_path / "out")
    np.testing.assert_allclose(b.classify(TEXTS).probabilities, a.classify(TEXTS).probabilities, atol=INT4_ATOL)
    assert_bundle_vectors_pass(tmp_path / "out", int4_encoder)
    assert four_bit_gathers(int4_encoder / "model.onnx") == [onnx.TensorProto.INT4]  # deploy repacked a copy


def test_asymmetric_int4_encoder_for_ios_fixed_shape(tmp_path, encoder_bundle):
    """UINT4 table and zero points, one block a row (an odd count: each zero point row is padded to a byte)."""
    import onnx

    bundle = quantized(encoder_bundle.path, tmp_path / "asym", symmetric=False).path
    assert four_bit_gathers(bundle / "model.onnx") == [onnx.TensorProto.UINT4]
    r = deploy(bundle, "ios", tmp_path / "out", DeployOptions(fixed_shape=FIXED))
    assert r.manifest.deploy.extra["repacked_tables"][0]["from"] == "uint4"
    assert r.manifest.deploy.extra["ort_optimization_style"] == "Runtime"
    assert assert_matches(tmp_path / "out", bundle, shapes=[(1, 32)]) <= INT4_ATOL
    m = runtime.load(tmp_path / "out")
    np.testing.assert_allclose(m.classify(TEXTS).probabilities, runtime.load(as_shipped(bundle)).classify(TEXTS).probabilities,
                               atol=INT4_ATOL)


def gather_graph(signed: bool, zero_points: bool, rows: int, width: int, block: int, seed: int):
    """One GatherBlockQuantized over a random 4-bit table, as the int4 recipe writes it (or with the options it does not use)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    kind, low, high = (TensorProto.INT4, -8, 8) if signed else (TensorProto.UINT4, 0, 16)
    blocks = -(-width // block)

    def four_bit(name, shape):
        values = rng.integers(low, high, shape)
        return helper.make_tensor(name, kind, shape, values.flatten().tolist())

    inits = [four_bit("table", (rows, width)),
             numpy_helper.from_array(rng.uniform(0.01, 0.2, (rows, blocks)).astype(np.float32), "scales")]
    inputs = ["table", "ids", "scales"]
    if zero_points:
        inits.append(four_bit("zero_points", (rows, blocks)))
        inputs.append("zero_points")
    node = helper.make_node("GatherBlockQuantized", inputs, ["rows"], domain="com.microsoft", block_size=block,
                            gather_axis=0, quantize_axis=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])],
                              [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["b", "s", width])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23), helper.make_opsetid("com.microsoft", 1)])


@pytest.mark.parametrize("signed, zero_points", [(True, False), (False, True), (False, False), (True, True)])
@pytest.mark.parametrize("width, block", [(32, 32), (96, 32), (128, 16)])  # 1, 3 and 8 blocks a row
def test_repacked_tables_gather_the_same_rows_and_survive_the_ort_format(tmp_path, signed, zero_points, width, block):
    import onnx
    import onnxruntime as ort

    from edgeformer.deploy import ort_tables

    model = gather_graph(signed, zero_points, rows=50, width=width, block=block, seed=width + block)
    onnx.save(model, str(tmp_path / "before.onnx"))
    assert ort_tables.unstorable(model) is None
    done = ort_tables.repack_tables(model)
    assert [(t["table"], t["from"]) for t in done] == [("table", "int4" if signed else "uint4")]
    # onnxruntime before 1.27 misreads packed zero points of an odd number of blocks a row (measured, ort_tables.py)
    assert done[0]["min_onnxruntime"] == ("1.27" if (zero_points or not signed) and (width // block) % 2 else "1.23")
    assert not any(i.data_type in ort_tables.FOUR_BIT_TYPES for i in model.graph.initializer)
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp_path / "model.onnx"))
    mobile.convert_to_ort(tmp_path / "model.onnx", tmp_path / "ort", "Fixed")
    before = ort.InferenceSession(str(tmp_path / "before.onnx"), providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(str(tmp_path / "ort" / "model.ort"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in ((1, 1), (3, 7), (2, 50)):
        ids = rng.integers(-50, 50, shape)  # negative ids count from the end, as in Gather
        want, got = before.run(None, {"ids": ids})[0], after.run(None, {"ids": ids})[0]
        assert got.shape == want.shape == shape + (width,)
        np.testing.assert_array_equal(got, want)  # the same 4-bit values and scales: the same floats


def test_pack_nibbles_low_first_and_pads_odd_rows():
    from edgeformer.deploy.ort_tables import pack_nibbles

    np.testing.assert_array_equal(pack_nibbles(np.array([[1, 2, 15, 0], [3, 4, 5, 6]])), [[0x21, 0x0F], [0x43, 0x65]])
    np.testing.assert_array_equal(pack_nibbles(np.array([[7], [9]])), [[0x07], [0x09]])
    np.testing.assert_array_equal(pack_nibbles(np.array([[1, 2, 3]])), [[0x21, 0x03]])


def dequantize_then_gather(src, dst):
    """A copy of an int4 bundle whose embedding is DequantizeLinear over the INT4 table, then Gather (the standard
    ops' form of the same numbers, as a QDQ quantizer writes it): a 4-bit tensor that is no GatherBlockQuantized table."""
    import shutil

    import onnx
    from onnx import helper

    from edgeformer.runtime.bundle import read_manifest, write_manifest

    shutil.copytree(src, dst)
    model = onnx.load(str(dst / "model.onnx"))
    [gather] = [n for n in model.graph.node if n.op_type == "GatherBlockQuantized"]
    table, ids, scales = gather.input[:3]
    block = next(a.i for a in gather.attribute if a.name == "block_size")
    index = list(model.graph.node).index(gather)
    model.graph.node.remove(gather)
    model.graph.node.insert(index, helper.make_node("Gather", [f"{table}.float", ids], list(gather.output), axis=0))
    model.graph.node.insert(index, helper.make_node("DequantizeLinear", [table, scales], [f"{table}.float"], axis=1,
                                                    block_size=block))
    onnx.save(model, str(dst / "model.onnx"))
    write_manifest(dst, read_manifest(dst))
    return dst


def test_a_four_bit_tensor_the_ort_format_cannot_hold_is_refused_in_one_line(tmp_path, int4_encoder):
    crafted = dequantize_then_gather(int4_encoder, tmp_path / "qdq")
    assert assert_matches(crafted, int4_encoder, shapes=[(2, 9)], shipped=False) == 0.0  # a real bundle, the same numbers
    proc = cli("deploy", crafted, "--target", "android", "--out", tmp_path / "out", ok=False)
    assert_bad_input(proc, "the android target cannot take")
    assert "the ORT format has no 4-bit type, and its int4 tensor 'model.embed.tok.weight_Q4' is read by " \
           "DequantizeLinear, not only as a GatherBlockQuantized table" in proc.stderr
    assert "quantize the float32 bundle with `edgeformer quantize --recipe int4`" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_ort_file_that_does_not_load_is_refused_and_nothing_written(tmp_path, int4_encoder, monkeypatch):
    """Without the repack, onnxruntime's converter writes an .ort of INT4 tables and reports success; the load catches it."""
    from edgeformer.deploy import ort_tables

    monkeypatch.setattr(ort_tables, "unstorable", lambda model: None)
    monkeypatch.setattr(ort_tables, "repack_tables", lambda model: [])
    with pytest.raises(DeployError, match=r"cannot load the model\.ort its converter wrote \(.*Unsupported tensor data type"
                                          r".*\); the android target cannot take this bundle") as e:
        deploy(int4_encoder, "android", tmp_path / "out")
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_a_table_the_uint8_form_cannot_hold_is_named_and_left_alone():
    from edgeformer.deploy import ort_tables

    model = gather_graph(signed=True, zero_points=False, rows=20, width=49, block=16, seed=0)  # odd rows: no whole bytes
    before = model.SerializeToString()
    assert ort_tables.unstorable(model) == ("its 4-bit table 'table' (node '') is gathered along axis 0 and quantized "
                                            "along axis 1 with 49 values a row, where the uint8 form needs axis 0, the "
                                            "last axis and an even row")
    assert ort_tables.repack_tables(model) == [] and model.SerializeToString() == before


@pytest.fixture(scope="module")
def untied_text_decoder(tmp_path_factory, tokenizer):
    """A cached decoder whose LM head has its own weight: int4 gives its embedding an INT4 table of its own."""
    from edgeformer.export import export_bundle

    from .conftest import make_checkpoint

    root = tmp_path_factory.mktemp("untied")
    path, _ = make_checkpoint(root / "ckpt", seed=4, tokenizer=tokenizer, arch="decoder", positional="learned",
                              vocab_size=tokenizer.vocab_size, tie_embeddings=False)
    return path, export_bundle(path, root / "bundle", kv_cache=True)


@pytest.mark.parametrize("tied", [True, False])
def test_int4_cached_decoder_for_android_generates_what_the_bundle_generates(tmp_path, request, tied):
    import onnx

    from edgeformer.quantize import quantize_bundle
    from edgeformer.quantize.evaluate import default_eval_texts
    from edgeformer.quantize.generation_eval import GenerationData

    exported = request.getfixturevalue("cached_text_decoder" if tied else "untied_text_decoder")[1]
    data = GenerationData(texts=default_eval_texts(8).texts, prompts=2, greedy_tokens=8)
    bundle = quantize_bundle(exported.path, tmp_path / "int4", "int4", data=data, bench_seconds=0.05).path
    # Tied: the embedding reads the LM head's uint8 blocks (quantize/tied_int4.py), a form the ORT format holds.
    assert four_bit_gathers(bundle / "model.onnx") == [None if tied else onnx.TensorProto.INT4]
    r = deploy(bundle, "android", tmp_path / "out")
    assert len(r.manifest.deploy.extra["repacked_tables"]) == (0 if tied else 1)
    assert r.manifest.deploy.extra["min_onnxruntime"] == "1.28"  # MatMulNBits' weight_prepacked (mobile.py)
    assert assert_matches(tmp_path / "out", bundle, shapes=[(1, 1), (3, 9), (2, 40)]) <= INT4_ATOL
    a, b = runtime.load(as_shipped(bundle)), runtime.load(tmp_path / "out")
    for prompt in ("the quick brown", "edge devices"):
        want = a.generate(prompt, max_new_tokens=32)
        assert b.generate(prompt, max_new_tokens=32).token_ids == want.token_ids and len(want.token_ids[0]) == 32
    assert_bundle_vectors_pass(tmp_path / "out", bundle)


@pytest.mark.parametrize("ops, repacked, oldest", [
    ({"ai.onnx;18": ["Gather", "MatMul"]}, [], "1.14"),
    ({"ai.onnx;23": ["Attention"]}, [], "1.23"),
    ({"ai.onnx;23": ["RotaryEmbedding"]}, [], "1.23"),
    ({"ai.onnx;23": ["Attention"], "com.microsoft;1": ["GatherBlockQuantized"]}, [{"min_onnxruntime": "1.27"}], "1.27"),
    ({"ai.onnx;23": ["Attention"], "com.microsoft;1": ["GatherBlockQuantized", "MatMulNBits"]},
     [{"min_onnxruntime": "1.23"}], "1.28"),
])
def test_minimum_onnxruntime_is_the_newest_need(ops, repacked, oldest):
    assert mobile.minimum_onnxruntime(None, ops, repacked) == oldest
