"""`edgeformer deploy --target web` and `edgeformer serve`: the folder, its checks in headless Chromium
(one browser launch per folder), the refusals, and the headers the browser needs."""

import json
import os
import shutil
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import torch

from edgeformer import runtime
from edgeformer.deploy import DeployCheckFailed, DeployError, DeployOptions, deploy
from edgeformer.deploy import web
from edgeformer.deploy.serve import ServeError, serve_folder
from edgeformer.deploy.web_check import run_browser
from edgeformer.runtime.bundle import Manifest
from edgeformer.runtime.vectors import verify_vectors

from .test_cli import assert_bad_input, cli

TEXTS = ["the quick brown fox", "edge devices run small transformers", "a lazy dog"]
CHECKS = {"page loads in Chromium", "vectors in Chromium (model.verify())", "outputs in Chromium vs Python"}
RUNTIME_FILES = {"edgeformer.js", "ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
                 "tokenizers.min.mjs", "index.html", "page.js", "page.css", "vectors.json", "manifest.json", "README.md"}


def browser_setup() -> str | None:
    """Why the browser checks cannot run here (None: they can). Installs web/node_modules when npm can."""
    if not os.access(web.chromium_path(), os.X_OK):
        return f"{web.chromium_path()} is missing (`make test` installs Debian's chromium)"
    if web.node_path() is None:
        return "Node.js is missing (`make test` installs it)"
    if web.npm_version("playwright-core") is None:
        npm = shutil.which("npm")
        if npm is None:
            return "npm is missing, so web/node_modules cannot be installed"
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=web.WEB_DIR, capture_output=True, text=True,
                              env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})
        if proc.returncode != 0:
            return f"npm ci failed in web/: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    return web.node_too_old()


SETUP = browser_setup()
needs_browser = pytest.mark.skipif(SETUP is not None, reason=f"browser checks cannot run here: {SETUP}")


def checks_of(result) -> dict:
    return {c.name: c for c in result.deployment.checks}


def assert_checked(result, *extra: str) -> dict:
    checks = checks_of(result)
    assert CHECKS | set(extra) <= set(checks), sorted(checks)
    assert all(c.passed for c in checks.values()), [c.line() for c in checks.values()]
    record = json.loads((result.path / "manifest.json").read_text())["deploy"]
    assert record["target"] == "web" and record["web"]["checked"] is True
    assert [p["threads"] for p in record["web"]["pages"]] == [1, 2]
    assert record["web"]["versions"] == {"onnxruntime-web": "1.31.1", "tokenizers": web.npm_version("@huggingface/tokenizers")}
    assert record["web"]["browser"].startswith("Chromium ")
    # Float outputs within tolerance of Python at both thread counts (float32 and int4: 1e-5; int8: 3e-2 x
    # max(1, |output|)), and the page was cross-origin isolated at 2.
    out = checks["outputs in Chromium vs Python"].values
    assert set(out["max_abs"]) == {"1", "2"} and all(out["max_abs"][n] <= out["limit"][n] for n in out["limit"])
    assert out["relative"] == (record["web"]["tolerance"]["relative_to"] is not None)
    if not out["relative"]:
        assert out["tolerance"] == 1e-5 and max(out["max_abs"].values()) <= 1e-5
    assert checks["page loads in Chromium"].values["2"]["isolated"] is True
    return checks


@pytest.fixture(scope="module")
def encoder_web(tmp_path_factory, encoder_bundle):
    if SETUP is not None:
        pytest.skip(f"browser checks cannot run here: {SETUP}")
    return deploy(encoder_bundle.path, "web", tmp_path_factory.mktemp("web") / "enc")


@needs_browser
def test_encoder_folder_is_checked_in_chromium_and_loads_in_python(encoder_web, encoder_bundle):
    out = encoder_web.path
    assert RUNTIME_FILES | {"model.onnx", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    checks = assert_checked(encoder_web, "tokenizer in Chromium vs Python")
    assert "classify" in checks["outputs in Chromium vs Python"].values["calls"]
    # The graph is the bundle's own bytes (float32: nothing to rewrite); the folder is a bundle Python loads.
    assert (out / "model.onnx").read_bytes() == (encoder_bundle.path / "model.onnx").read_bytes()
    folder, bundle = runtime.load(out), runtime.load(encoder_bundle.path)
    np.testing.assert_allclose(folder.classify(TEXTS).probabilities, bundle.classify(TEXTS).probabilities, atol=1e-6)
    assert verify_vectors(folder).passed
    readme = (out / "README.md").read_text()
    assert "Cross-Origin-Embedder-Policy: require-corp" in readme and "edgeformer serve DIR" in readme
    assert "await model.classify(" in readme and "| threads | page load ms" in readme
    html = (out / "index.html").read_text()
    assert "{{" not in html and 'src="page.js"' in html


@needs_browser
def test_int8_encoder_folder(tmp_path, encoder_bundle):
    from edgeformer.quantize import quantize_bundle

    q = quantize_bundle(encoder_bundle.path, tmp_path / "int8", "int8-dynamic", bench_seconds=0.1, smooth_alpha=0.7)
    result = deploy(q.path, "web", tmp_path / "web")
    assert assert_checked(result)["outputs in Chromium vs Python"].values["relative"] is True
    # The folder's vectors hold in the browser: each case's atol is at least the browser's int8 tolerance.
    vectors = json.loads((result.path / "vectors.json").read_text())
    assert all(c["atol"] >= 3e-2 for c in vectors["cases"]) and verify_vectors(runtime.load(result.path)).passed


@needs_browser
def test_cached_decoder_generates_python_tokens_in_chromium(tmp_path, cached_text_decoder):
    checks = assert_checked(deploy(cached_text_decoder[1].path, "web", tmp_path / "web"),
                            "generation in Chromium vs Python", "tokenizer in Chromium vs Python")
    assert checks["generation in Chromium vs Python"].values["max_new_tokens"] == 32


@needs_browser
def test_int4_decoder_ships_float32_activations_and_matches_at_float32_tolerance(tmp_path, cached_text_decoder,
                                                                               monkeypatch):
    from edgeformer.quantize import quantize_bundle
    from edgeformer.runtime import graph_files

    monkeypatch.setattr(graph_files, "EXTERNAL_DATA_BYTES", 4096)  # as a large model's: its weights beside the graph
    q = quantize_bundle(cached_text_decoder[1].path, tmp_path / "int4", "int4", bench_seconds=0.1)
    assert "model.onnx.data" in runtime.open_bundle(q.path).manifest.files
    result = deploy(q.path, "web", tmp_path / "web")
    assert_checked(result, "generation in Chromium vs Python")
    assert not (result.path / "model.onnx.data").exists()  # the page fetches one file per graph
    graphs = json.loads((result.path / "manifest.json").read_text())["deploy"]["web"]["graphs"]
    level = graphs["model.onnx"]["matmulnbits_accuracy_level"]
    assert level["to"] == 0 and level["from"] == {"4": level["from"]["4"]} and level["from"]["4"] > 0
    assert "accuracy_level` 0" in (result.path / "README.md").read_text()
    assert verify_vectors(runtime.load(result.path)).passed  # recorded on the graph the folder ships
    # The folder's graph computes in float32, so its vectors hold every runtime to float32's tolerance and
    # to the generated tokens (the bundle's own int4 vectors, at accuracy_level 4, allow CPU-class drift).
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["quantization"]["accuracy_level"] == 0
    cases = json.loads((result.path / "vectors.json").read_text())["cases"]
    generated = [c for c in cases if c["call"] == "generate"]
    assert generated and all(sum(c["stable_steps"]) > 0 for c in generated)
    assert all(c["atol"] <= 1e-5 * max(1.0, 1e3) for c in cases)


@needs_browser
def test_vit_conformer_and_spotter_folders(tmp_path):
    from edgeformer.export import export_bundle
    from edgeformer.deploy.web_tasks import audio_cases
    from edgeformer.modeling.checkpoint import save
    from edgeformer.modeling.models.conformer import Conformer
    from edgeformer.modeling.models.transformer import Transformer
    from edgeformer.modeling.training.speech import conformer_config
    from edgeformer.modeling.training.vision import digits, vit_config

    torch.manual_seed(0)
    save(Transformer(vit_config("tiny", digits(), n_layers=2)).eval(), tmp_path / "vit-ckpt")
    save(Conformer(conformer_config("tiny", d_model=32, n_heads=2, n_layers=2, d_ff=64, conv_kernel=5, dropout=0.0)).eval(),
         tmp_path / "asr-ckpt")
    torch.manual_seed(3)  # a random one-block spotter whose labels differ across the check's clips
    save(Conformer(conformer_config("tiny", labels=["yes", "no", "up", "down"], d_model=32, n_heads=2, n_layers=1, d_ff=64,
                                    conv_kernel=5, dropout=0.0)).eval(), tmp_path / "kws-ckpt")
    vit = deploy(export_bundle(tmp_path / "vit-ckpt", tmp_path / "vit").path, "web", tmp_path / "vit-web")
    assert "images" in assert_checked(vit)["outputs in Chromium vs Python"].values["calls"]
    asr = deploy(export_bundle(tmp_path / "asr-ckpt", tmp_path / "asr").path, "web", tmp_path / "asr-web")
    assert_checked(asr, "transcripts in Chromium vs Python")
    # A keyword spotter: classifyAudio's labels identical to Python's, its probabilities within 1e-5.
    kws = deploy(export_bundle(tmp_path / "kws-ckpt", tmp_path / "kws").path, "web", tmp_path / "kws-web")
    assert "classify_audio" in assert_checked(kws)["outputs in Chromium vs Python"].values["calls"]
    assert "await model.classifyAudio([samples], 16000)" in (kws.path / "README.md").read_text()
    labels = audio_cases(None, runtime.load(kws.path), None)[1]["classify_audio"][0]
    assert len(set(labels)) > 1  # the check's clips differ in label: a row answered for another clip would show
    # The demo pages take a picked file: an image is labelled, a WAV file transcribed or labelled.
    from PIL import Image

    from edgeformer.runtime.speech import write_wav

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    write_wav(tmp_path / "a.wav", (0.3 * np.sin(np.arange(12000) / 16000 * 2 * np.pi * 440)).astype(np.float32))
    for folder, picked, shown in [(vit.path, ("#image-file", tmp_path / "a.png"), "#image-out table"),
                                  (asr.path, ("#audio-file", tmp_path / "a.wav"), "#audio-out:not(:empty)"),
                                  (kws.path, ("#audio-file", tmp_path / "a.wav"), "#audio-labels table")]:
        steps = [{"upload": [picked[0], str(picked[1])]}, {"wait": shown}]
        shot = run_browser(folder, [], {}, web.chromium_path(), web.node_path(), web.WEB_DIR,
                           {"path": str(tmp_path / "page.png"), "steps": steps})["screenshot"]
        assert "answers" in shot and not shot["problems"], shot


@needs_browser
def test_seq2seq_folder_runs_both_graphs_and_generates_python_tokens(tmp_path):
    from edgeformer.export import export_bundle
    from edgeformer.modeling import ModelConfig, save
    from edgeformer.modeling.models.seq2seq import Seq2SeqTransformer

    from .conftest import TINY

    torch.manual_seed(5)
    # T5's shape (an imported T5 builds this): relative positions (a gathered bias table and a float mask),
    # RMSNorm, a gated feed-forward, no biases, a head size that is not d_model / n_heads
    cfg = ModelConfig.from_dict({**TINY, "arch": "seq2seq", "positional": "relative", "norm": "pre", "norm_type": "rmsnorm",
                                 "feed_forward": "gated", "activation": "gelu_tanh", "linear_bias": False,
                                 "qkv_bias": False, "head_size": 12, "relative_buckets": 8, "relative_max_distance": 20,
                                 "max_len": 48})
    save(Seq2SeqTransformer(cfg).eval(), tmp_path / "ckpt")
    result = deploy(export_bundle(tmp_path / "ckpt", tmp_path / "bundle").path, "web", tmp_path / "web")
    checks = assert_checked(result, "generation in Chromium vs Python")
    assert "run encoder" in checks["outputs in Chromium vs Python"].values["calls"]
    assert (result.path / "encoder.onnx").is_file()


@needs_browser
def test_a_failed_check_writes_nothing(tmp_path, encoder_bundle, monkeypatch):
    """A vector whose expected value is off makes model.verify() fail in the page: exit 1, no folder."""
    recorded = web.record_vectors

    def off_by_one(work, model):
        recorded(work, model)
        data = json.loads((work / "vectors.json").read_text())
        case = next(c for c in data["cases"] if c["call"] == "run")
        tensor = next(iter(case["expect"]["outputs"].values()))
        tensor["data"][0] += 1.0
        (work / "vectors.json").write_text(json.dumps(data))

    monkeypatch.setattr(web, "record_vectors", off_by_one)
    with pytest.raises(DeployCheckFailed, match=r"vectors in Chromium .*\(run\) fails"):
        deploy(encoder_bundle.path, "web", tmp_path / "web")
    assert not (tmp_path / "web").exists() and list(tmp_path.iterdir()) == []


def test_no_check_is_recorded_and_unchecked_folder_loads(tmp_path, encoder_bundle):
    if web.npm_version("onnxruntime-web") is None:
        pytest.skip(f"web/node_modules is missing: {SETUP}")
    proc = cli("deploy", encoder_bundle.path, "--target", "web", "--no-check", "--out", tmp_path / "web")
    assert "--no-check" in proc.stdout
    record = json.loads((tmp_path / "web" / "manifest.json").read_text())["deploy"]
    assert record["web"]["checked"] is False and record["checks"] == []
    assert "not checked in a browser" in (tmp_path / "web" / "README.md").read_text()
    assert verify_vectors(runtime.load(tmp_path / "web")).passed
    # A deployment is not a bundle to deploy again (a TensorRT engine folder is refused the same way).
    assert_bad_input(cli("deploy", tmp_path / "web", "--target", "web", "--out", tmp_path / "again", ok=False),
                     "is already a web deployment")


def test_no_chromium_is_one_line_and_writes_nothing(tmp_path, encoder_bundle, monkeypatch):
    if web.npm_version("onnxruntime-web") is None:
        pytest.skip(f"web/node_modules is missing: {SETUP}")
    monkeypatch.setenv("EDGEFORMER_CHROMIUM", str(tmp_path / "no-chromium"))
    proc = cli("deploy", encoder_bundle.path, "--target", "web", "--out", tmp_path / "web", ok=False)
    assert_bad_input(proc, "no-chromium is not there; install Debian's chromium")
    assert not (tmp_path / "web").exists()


def test_no_node_or_an_old_one_is_one_line_and_writes_nothing(tmp_path, encoder_bundle, monkeypatch):
    if web.npm_version("playwright-core") is None or not os.access(web.chromium_path(), os.X_OK):
        pytest.skip(f"web/node_modules or Chromium is missing: {SETUP}")
    monkeypatch.setenv("EDGEFORMER_NODE", str(tmp_path / "no-node"))
    proc = cli("deploy", encoder_bundle.path, "--target", "web", "--out", tmp_path / "web", ok=False)
    assert_bad_input(proc, "the web check drives Chromium from Node.js, which is not installed")
    old = tmp_path / "node18"  # Debian 12's nodejs: below playwright-core's engines floor
    old.write_text("#!/bin/sh\necho v18.19.0\n")
    old.chmod(0o755)
    monkeypatch.setenv("EDGEFORMER_NODE", str(old))
    proc = cli("deploy", encoder_bundle.path, "--target", "web", "--out", tmp_path / "web", ok=False)
    assert_bad_input(proc, f"needs Node.js 20 or newer, and {old} is v18.19.0")
    assert not (tmp_path / "web").exists()


def test_lsh_and_fixed_shapes_are_refused(encoder_bundle):
    bundle = runtime.load(encoder_bundle.path).bundle
    lsh = Manifest.from_json({**bundle.manifest.to_json()})
    lsh.model.config = {**lsh.config, "attention_kind": "lsh"}
    with pytest.raises(DeployError, match="LSH attention: its bucket decisions"):
        web.refuse(bundle, "web", lsh, DeployOptions())
    with pytest.raises(DeployError, match="--fixed-shape is for android/ios"):
        web.refuse(bundle, "web", bundle.manifest, DeployOptions(fixed_shape={"batch": 1}))


def test_serve_sends_isolation_headers_and_types(tmp_path):
    for name, body in [("index.html", "<p>hi</p>"), ("m.mjs", "export {}"), ("w.wasm", "\0asm"), ("manifest.json", "{}")]:
        (tmp_path / name).write_text(body)
    types = {"index.html": "text/html", "m.mjs": "text/javascript", "w.wasm": "application/wasm",
             "manifest.json": "application/json"}
    with serve_folder(tmp_path) as server:
        assert server.url.startswith("http://127.0.0.1:")
        for name, mime in types.items():
            with urllib.request.urlopen(server.url + name) as r:
                assert r.headers["Content-Type"].split(";")[0] == mime
                assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
                assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
                assert r.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    with pytest.raises(ServeError, match="is not a folder"):
        serve_folder(tmp_path / "index.html").__enter__()
    assert_bad_input(cli("serve", tmp_path / "missing", ok=False), "does not exist; expected a folder to serve")
    # The verb: loopback by default, says its URL, serves until stopped.
    exe = os.path.join(os.path.dirname(sys.executable), "edgeformer")
    proc = subprocess.Popen([exe, "serve", str(tmp_path), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "w.wasm") as r:
            assert r.headers["Content-Type"] == "application/wasm" and r.headers["Cross-Origin-Embedder-Policy"]
        # A port already taken is one line naming it, not a traceback.
        taken = url.rstrip("/").rsplit(":", 1)[1]
        assert_bad_input(cli("serve", tmp_path, "--port", taken, ok=False),
                         f"cannot listen on 127.0.0.1 port {taken}: Address already in use")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_answers_the_page_left_out_fail_the_output_and_tokenizer_checks(encoder_bundle):
    from edgeformer.deploy.web_check import outputs_check, tokens_check

    manifest = runtime.load(encoder_bundle.path).manifest
    hidden = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    answer = {"last_hidden_state": {"dims": [1, 2, 3], "data": hidden.ravel().tolist()}}
    expect = {"run": [{"last_hidden_state": hidden}, {"last_hidden_state": hidden}]}
    page = lambda run: [{"threads": 1, "answers": {"run": run}}]  # noqa: E731
    assert outputs_check(page([answer, answer]), {"run": []}, expect, manifest).passed
    short = outputs_check(page([answer]), {"run": []}, expect, manifest)
    assert not short.passed and "gave 1 answers for 2 input sets" in short.detail
    lost = outputs_check(page([answer, {}]), {"run": []}, expect, manifest)
    assert not lost.passed and "no 'last_hidden_state' output" in lost.detail
    ids = [[2, 5, 3], [2, 3]]
    assert tokens_check([{"threads": 1, "answers": {"tokens": ids}}], ["a", "b"], ids).passed
    assert not tokens_check([{"threads": 1, "answers": {"tokens": ids[:1]}}], ["a", "b"], ids).passed


def test_a_stream_or_spotter_answered_otherwise_fails_its_checks():
    """The golden streaming bundle's stream case, answered as a faithful page would and then altered: a text,
    a call's frames, transcribeStream's texts, logits beyond 1e-5 and a spotter's label each fail."""
    from edgeformer.deploy.web_check import outputs_check, stream_check
    from edgeformer.deploy.web_tasks import stream_cases

    from .web_parity import GOLDEN_STREAM

    model = runtime.load(GOLDEN_STREAM)
    cases, expect = stream_cases(None, model, None)
    cases = {"stream": cases["stream"]}
    want = expect["stream"]
    assert len(want["logits"]) == len(cases["stream"]["pieces"]) + 1 and len(want["logits"][0]) == 0  # 333 samples: no frame

    def page(texts=None, logits=None, streamed=None):
        calls = [{"text": t, "logits": {"dims": list(x.shape), "data": x.ravel().tolist()}}
                 for t, x in zip(texts or want["texts"], logits or want["logits"])]
        return [{"threads": 1, "answers": {"stream": {"calls": calls, "texts": streamed or want["texts"]}, "run": []}}]

    expect = {"run": [], "stream": want}
    assert stream_check(page(), want).passed and outputs_check(page(), cases, expect, model.manifest).passed
    texts = want["texts"][:-1] + [want["texts"][-1] + "1"]
    assert "the text after call 9 is" in stream_check(page(texts=texts), want).detail
    moved = want["logits"][:1] + [np.concatenate([want["logits"][1], want["logits"][2][:1]]), want["logits"][2][1:]] \
        + want["logits"][3:]
    assert "call 1 completed" in stream_check(page(logits=moved), want).detail
    assert not outputs_check(page(logits=moved), cases, expect, model.manifest).passed
    assert "transcribeStream yields" in stream_check(page(streamed=want["texts"][::-1]), want).detail
    off = [x + 2e-5 for x in want["logits"]]
    failed = outputs_check(page(logits=off), cases, expect, model.manifest)
    assert not failed.passed and "beyond 1e-05" in failed.detail and "stream" in failed.detail
    probs = np.array([[0.7, 0.3], [0.4, 0.6]])
    spotted = [{"threads": 1, "answers": {"run": [], "classify_audio": {
        "labels": ["yes", "yes"], "probabilities": {"dims": [2, 2], "data": probs.ravel().tolist()}}}}]
    wrong = outputs_check(spotted, {"classify_audio": {}}, {"run": [], "classify_audio": (["yes", "no"], probs)},
                          model.manifest)
    assert not wrong.passed and "classify_audio labels at 1 threads" in wrong.detail
