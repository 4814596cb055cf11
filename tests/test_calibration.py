"""Static int8 calibration, activation smoothing and the recipe comparison, on small trained-tokenizer
models (fast) with stated fidelity thresholds, and every bad calibration input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgeformer import runtime
from edgeformer.export import export_bundle
from edgeformer.modeling import ModelConfig, Transformer, save
from edgeformer.modeling.training.tokenizer import train_tokenizer
from edgeformer.quantize import (CALIBRATION_METHODS, QuantizeError, calibration_batches, compare_recipes,
                                 default_calibration_texts, default_eval_texts, quantize_bundle)
from edgeformer.quantize.smooth import activation_absmax, smooth_matmul_inputs, weight_matmuls

EXE = str(Path(sys.executable).with_name("edgeformer"))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A pre-norm encoder (tiny preset) with a tokenizer trained on Python's docs."""
    d = tmp_path_factory.mktemp("calib")
    tok = train_tokenizer(default_eval_texts(64).texts + default_calibration_texts(), vocab_size=400)
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_preset("tiny", vocab_size=tok.vocab_size, dropout=0.0)).eval()
    save(model, d / "ckpt", tokenizer=tok)
    export_bundle(d / "ckpt", d / "bundle")
    return d


def test_calibration_and_evaluation_texts_are_disjoint():
    calib, evals = default_calibration_texts(), default_eval_texts().texts
    assert len(calib) == 64 and len(evals) >= 64 and not set(calib) & set(evals)


def test_smoothing_keeps_the_float_graph_and_folds_into_pre_norms(encoder):
    model = runtime.load(encoder / "bundle")
    graph = onnx.load(str(model.bundle.model_path))
    batches = calibration_batches(model)
    assert [len(b["input_ids"]) for b in batches] == [8] * 8 and len({b["input_ids"].shape for b in batches}) == 1
    absmax = activation_absmax(graph, batches)
    assert set(absmax) == set(weight_matmuls(graph)) and all(a.shape == (64,) or a.shape == (256,) for a in absmax.values())
    smoothed = onnx.ModelProto()
    smoothed.CopyFrom(graph)
    assert smooth_matmul_inputs(smoothed, absmax, alpha=0.7) == 8  # qkv, proj, fc1, fc2 in each of 2 layers
    muls = [n for n in smoothed.graph.node if n.name.startswith("smooth_")]
    # Pre-norm: ln1 feeds only qkv and ln2 only fc1, so those two scales fold into the norms; the
    # attention output (proj) and the GELU output (fc2) get a Mul each.
    assert len(muls) == 4 and all(n.op_type == "Mul" for n in muls)
    onnx.checker.check_model(smoothed)
    run = lambda g: ort.InferenceSession(g.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, batches[0])
    for before, after in zip(run(graph), run(smoothed)):
        np.testing.assert_allclose(after, before, atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_int8_static_calibration_methods(encoder, tmp_path, method):
    from edgeformer.quantize import RecipeOptions

    r = quantize_bundle(encoder / "bundle", tmp_path / "q", "int8-static", options=RecipeOptions(calibration=method),
                        smooth_alpha=0.7, bench_seconds=0.1)
    # Measured on this random-weight encoder: 0.99999 mean cosine for all three methods.
    assert r.fidelity.metric == "embedding cosine" and r.fidelity.mean_cosine >= 0.98 and r.fidelity.min_cosine >= 0.95
    graph = onnx.load(str(tmp_path / "q" / "model.onnx")).graph
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) >= 6  # qkv, proj, fc1 of both layers
    assert json.loads((tmp_path / "q" / "manifest.json").read_text())["quantization"]["calibration"]["method"] == method


def test_auto_smoothing_picks_by_calibration_outputs(encoder, tmp_path):
    said = []
    r = quantize_bundle(encoder / "bundle", tmp_path / "q", "int8-dynamic", smooth_alpha="auto", bench_seconds=0.1,
                        progress=said.append)
    assert len([line for line in said if "calibration output cosine" in line]) == 5
    trials = r.smoothing_trials
    assert list(trials) == ["off", "0.5", "0.6", "0.7", "0.8"] and all(0.9 < c <= 1.0 for c in trials.values())
    best = max(trials, key=trials.get)
    assert r.smooth_alpha == (None if best == "off" else float(best))
    assert r.fidelity.mean_cosine >= 0.98


def test_npz_calibration_data(encoder, tmp_path):
    model = runtime.load(encoder / "bundle")
    feeds = model.tokenizer.encode_batch(default_calibration_texts(20), 128, truncation=True).feeds(["input_ids", "attention_mask"])
    np.savez(tmp_path / "calib.npz", **feeds)
    r = quantize_bundle(encoder / "bundle", tmp_path / "q", "int8-static", calib_data=tmp_path / "calib.npz",
                        smooth_alpha=None, bench_seconds=0.1)
    assert r.fidelity.mean_cosine >= 0.98
    calib = json.loads((tmp_path / "q" / "manifest.json").read_text())["quantization"]["calibration"]
    assert calib == {"method": "percentile", "rows": 20, "data": "calib.npz"}


def test_bad_calibration_data(encoder, tmp_path):
    bundle = encoder / "bundle"
    ids = np.ones((4, 10), np.int64)
    cases = {
        "names.npz": (dict(input_ids=ids, mask=ids), "holds arrays \\['input_ids', 'mask'\\]; expected exactly the model's inputs"),
        "shapes.npz": (dict(input_ids=ids, attention_mask=ids[:, :5]), "must be \\(rows, seq\\) with one shape; got attention_mask \\(4, 5\\)"),
        "empty.npz": (dict(input_ids=ids[:0], attention_mask=ids[:0]), "the calibration set in .* is empty \\(0 rows"),
        "float.npz": (dict(input_ids=ids.astype(np.float32), attention_mask=ids), "input_ids is float32; expected integer"),
        "vocab.npz": (dict(input_ids=ids * 5000, attention_mask=ids), "input_ids run from 5000 to 5000; expected 0..399"),
        "long.npz": (dict(input_ids=np.ones((1, 500), np.int64), attention_mask=np.ones((1, 500), np.int64)),
                     "sequences of 500 tokens are longer than the model's maximum of 128"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(QuantizeError, match=message):
            quantize_bundle(bundle, tmp_path / "out", "int8-static", calib_data=tmp_path / name)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(Exception, match="empty.txt is empty; expected calibration texts"):
        quantize_bundle(bundle, tmp_path / "out", "int8-static", calib_data=tmp_path / "empty.txt")
    with pytest.raises(QuantizeError, match="calibration file .*missing.txt does not exist"):
        quantize_bundle(bundle, tmp_path / "out", "int8-static", calib_data=tmp_path / "missing.txt")
    with pytest.raises(QuantizeError, match="smoothing alpha 1.5 is out of range; expected a number in \\(0, 1\\]"):
        quantize_bundle(bundle, tmp_path / "out", "int8-dynamic", smooth_alpha=1.5)
    assert not (tmp_path / "out").exists()


def test_compare_draws_the_tradeoff(encoder, tmp_path):
    from edgeformer.quantize import plot_tradeoff

    results = compare_recipes(encoder / "bundle", smooth_alpha=0.7, bench_seconds=0.1)
    assert [r.recipe for r in results] == ["int8-dynamic", "int8-static", "int4", "int8-weights", "fp16"]
    assert all(r.float_ms > 0 and r.quant_ms > 0 and 0 < r.size_ratio < 1 for r in results)
    path = plot_tradeoff(results, tmp_path / "tradeoff.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["tradeoff.png"]  # no temporary file left beside it


def test_quantize_cli_static_and_plot_errors(encoder, tmp_path):
    (tmp_path / "calib.txt").write_text("\n".join(default_calibration_texts(16)))
    proc = subprocess.run([EXE, "quantize", str(encoder / "bundle"), "--out", str(tmp_path / "q"), "--recipe", "int8-static",
                           "--calibration", "minmax", "--calib-data", str(tmp_path / "calib.txt"), "--smooth-alpha", "off",
                           "--json", "-"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["recipe"] == "int8-static" and result["smooth_alpha"] is None and result["fidelity"]["mean_cosine"] >= 0.98
    for args, message in [
        (["--compare", "--plot", str(tmp_path / "x.bmp")], "expected a file name ending in .png, .svg, .pdf"),
        (["--out", str(tmp_path / "y"), "--plot", str(tmp_path / "x.png")], "--plot draws the --compare table; give --compare too"),
        (["--out", str(tmp_path / "y"), "--recipe", "int8-static", "--calib-data", str(tmp_path / "none.npz")],
         "calibration file .*none.npz does not exist"),
    ]:
        proc = subprocess.run([EXE, "quantize", str(encoder / "bundle"), *args], capture_output=True, text=True)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        import re
        assert re.search(message, proc.stderr), proc.stderr
    assert not (tmp_path / "y").exists()
