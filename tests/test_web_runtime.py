"""edgeformer.js (web/) under Node against the Python runtime on the same bundles: outputs within 1e-5,
identical tokenizer ids, greedy and seeded tokens, stop strings, labels and transcripts, a keyword
spotter's labels, a streaming recogniser's logits call by call and its texts, the same one-line errors,
a tampered file refused, and the Node unit tests (`node --test web/test/`)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from edgeformer import runtime
from edgeformer.runtime.errors import EdgeformerError
from edgeformer.runtime.inputs import axis_sizes, example_inputs, manifest_inputs
from edgeformer.runtime.speech_stream import AudioStream, shortest
from edgeformer.runtime.vectors import verify_vectors

from .conftest import TINY
# spotter is a fixture: imported here, pytest finds it by name; NODE, ok, run_js and tensor are also
# imported from here by test_web_logits_to_keep
from .web_parity import (ATOL, GOLDEN_STREAM, NODE, ROOT, STREAM_ATOL, WEB, clip, ensure_node_modules, max_abs, ok,
                         python_stream, run_js, spotter, tensor)

pytestmark = [pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: apt-get install nodejs npm)"),
              pytest.mark.filterwarnings("ignore:.*were truncated:RuntimeWarning")]  # the long text is cut on purpose


# --- bundles ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory):
    from edgeformer.export import export_bundle
    from edgeformer.modeling import ModelConfig, save
    from edgeformer.modeling.models.seq2seq import Seq2SeqTransformer

    root = tmp_path_factory.mktemp("web_s2s")
    torch.manual_seed(5)
    cfg = ModelConfig.from_dict({**TINY, "arch": "seq2seq", "positional": "sinusoidal", "norm": "post", "activation": "relu",
                         "max_len": 48})
    return export_bundle(save(Seq2SeqTransformer(cfg).eval(), root / "ckpt"), root / "bundle").path


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    """A random 3-channel 8x8 ViT with four labels (HWC and CHW differ for it, unlike one channel)."""
    from edgeformer.export import export_bundle
    from edgeformer.modeling import ModelConfig, Transformer, save

    root = tmp_path_factory.mktemp("web_vit")
    torch.manual_seed(7)
    cfg = ModelConfig.from_preset("tiny", arch="encoder", vocab_size=1, image_size=8, patch_size=4, num_channels=3,
                                  positional="learned", max_len=5, pooling="cls", num_labels=4,
                                  labels=["w", "x", "y", "z"], dropout=0.0)
    return export_bundle(save(Transformer(cfg).eval(), root / "ckpt"), root / "bundle").path


@pytest.fixture(scope="module")
def conformer(tmp_path_factory):
    from edgeformer.export import export_bundle
    from edgeformer.modeling.checkpoint import save
    from edgeformer.modeling.models.conformer import Conformer
    from edgeformer.modeling.training.speech import conformer_config

    root = tmp_path_factory.mktemp("web_speech")
    torch.manual_seed(0)
    model = Conformer(conformer_config("tiny", d_model=32, n_heads=2, n_layers=2, d_ff=64, conv_kernel=5, dropout=0.0)).eval()
    for block in model.blocks:
        block.conv.batch_norm.running_mean.normal_(0, 0.5)
        block.conv.batch_norm.running_var.uniform_(0.5, 2.0)
    save(model, root / "ckpt")
    return export_bundle(root / "ckpt", root / "bundle").path


TEXTS = ["the quick brown fox jumps over the lazy dog", "edge", "", "Ünïcödé 東京 🙂 <pad> [SEP] x=1;",
         " ".join(["transformers run small"] * 30)]  # the last is past the 64-token limit: truncated


def padded_cases(manifest, shapes, seed=0):
    return [{k: v for k, v in manifest_inputs(manifest, b, t, seed=seed + i).items()} for i, (b, t) in enumerate(shapes)]


@pytest.fixture(scope="module")
def parity(tmp_path_factory, encoder_bundle, cached_text_decoder, seq2seq, vit, conformer, spotter):
    """Every call run once by Python and once by edgeformer.js under Node: (python, js) pairs by name."""
    enc = runtime.load(encoder_bundle.path)
    dec = runtime.load(cached_text_decoder[1].path)
    s2s, images, speech = runtime.load(seq2seq), runtime.load(vit), runtime.load(conformer)
    kws, stream = runtime.load(spotter), runtime.load(GOLDEN_STREAM)
    rng = np.random.default_rng(0)
    py, calls = {}, []

    def add(name, model, call, args, expected):
        py[name] = expected
        calls.append({"bundle": str(model.bundle.path), "call": call, "args": args, "name": name})

    for i, feeds in enumerate(padded_cases(enc.manifest, [(1, 5), (3, 17), (2, 64)])):
        add(f"enc-run-{i}", enc, "run", {"inputs": {k: tensor(v) for k, v in feeds.items()}}, enc(feeds))
    sizes = axis_sizes(dec.manifest, 3, 6)
    feeds = example_inputs(dec.manifest.inputs, sizes, rng)
    add("dec-run", dec, "run", {"inputs": {k: tensor(v) for k, v in feeds.items()}}, dec(feeds))
    add("embed", enc, "embed", {"texts": TEXTS}, enc.embed(TEXTS))
    add("embed-raw", enc, "embed", {"texts": TEXTS[:2], "options": {"normalize": False, "batchSize": 1}},
        enc.embed(TEXTS[:2], normalize=False, batch_size=1))
    add("classify", enc, "classify", {"texts": TEXTS, "options": {"batchSize": 2}}, enc.classify(TEXTS, batch_size=2))
    tok = enc.tokenizer
    add("tokenize", enc, "tokenize", {"texts": TEXTS[:4], "decode": [tok.encode(t) for t in TEXTS[:4]]},
        ([tok.encode(t) for t in TEXTS[:4]], [tok.decode(tok.encode(t)) for t in TEXTS[:4]]))
    prompts = ["the quick brown", "edge devices run small transformers and"]
    greedy = dict(max_new_tokens=32)
    sampled = dict(max_new_tokens=24, temperature=0.9, top_k=40, top_p=0.9, repetition_penalty=1.3, seed=1234)
    add("greedy", dec, "generate", {"prompt": prompts, "options": greedy}, dec.generate(prompts, **greedy))
    add("sampled", dec, "generate", {"prompt": prompts, "options": sampled}, dec.generate(prompts, **sampled))
    hot = dict(max_new_tokens=20, temperature=1.5, seed=7)
    add("hot", dec, "generate", {"prompt": prompts, "options": hot}, dec.generate(prompts, **hot))
    first = dec.generate(prompts[0], max_new_tokens=12).texts[0]
    stop = dict(max_new_tokens=12, stop=[first[3:6]]) if len(first) > 6 else dict(max_new_tokens=12, stop=["e"])
    add("stop", dec, "stream", {"prompt": prompts, "options": stop}, dec.generate(prompts, **stop))
    s2s_prompt = [[5, 6, 7, 8, 9], [10, 11]]
    add("s2s-greedy", s2s, "generate", {"prompt": s2s_prompt, "options": {"max_new_tokens": 20}},
        s2s.generate(s2s_prompt, max_new_tokens=20))
    add("s2s-sampled", s2s, "generate", {"prompt": s2s_prompt, "options": sampled}, s2s.generate(s2s_prompt, **sampled))
    pics = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    add("images-hwc", images, "classify_images", {"images": tensor(pics)}, images.classify_images(pics))
    chw = rng.random((2, 3, 8, 8)).astype(np.float32)
    add("images-chw", images, "classify_images", {"images": tensor(chw), "options": {"layout": "CHW"}},
        images.classify_images(chw, layout="CHW"))
    big = rng.integers(0, 256, size=(2, 13, 11, 3), dtype=np.uint8)
    add("images-resize", images, "classify_images", {"images": tensor(big), "options": {"resize": True}},
        images.classify_images(big, resize=True))
    t = np.arange(24000) / 16000
    waves = [(0.4 * np.sin(2 * np.pi * 441 * t[:n]) + 0.05 * rng.standard_normal(n)).astype(np.float32)
             for n in (24000, 9000)]
    add("transcribe", speech, "transcribe", {"waveforms": [tensor(w) for w in waves]}, speech.transcribe(waves))
    speech_feeds = {"waveforms": np.stack([waves[0][:9000], waves[1]]), "lengths": np.array([9000, 7000])}
    add("speech-run", speech, "run", {"inputs": {k: tensor(v) for k, v in speech_feeds.items()}}, speech(speech_feeds))
    clips = [clip(n, i) for i, n in enumerate((24000, 1360, 9001, 16000, 4321))]  # padded in batches of 2
    add("classify-audio", kws, "classify_audio", {"waveforms": [tensor(w) for w in clips], "options": {"batchSize": 2}},
        kws.classify_audio(clips, batch_size=2))
    r = stream.manifest.model.stream  # lengths: one frame, one window, a chunk's edge, between edges, long
    recordings = [clip(n, 10 + i) for i, n in enumerate((shortest(r), r.window_samples, r.window_samples + r.hop_samples,
                                                          7001, 24000))]
    add("stream-transcribe", stream, "transcribe", {"waveforms": [tensor(w) for w in recordings]},
        stream.transcribe(recordings))
    for piece in (333, r.hop_samples, 5000):
        pieces = [recordings[4][i : i + piece] for i in range(0, len(recordings[4]), piece)]
        add(f"stream-{piece}", stream, "open_stream", {"pieces": [tensor(p) for p in pieces]}, python_stream(stream, pieces))
    pieces = [recordings[4][i : i + 900] for i in range(0, len(recordings[4]), 900)]
    add("transcribe-stream", stream, "transcribe_stream", {"pieces": [tensor(p) for p in pieces]},
        list(stream.transcribe_stream(pieces)))
    for name, model in (("enc", enc), ("dec", dec), ("s2s", s2s), ("vit", images), ("speech", speech), ("kws", kws),
                        ("stream", stream)):
        add(f"verify-{name}", model, "verify", {}, verify_vectors(model))
    results = run_js(tmp_path_factory.mktemp("web_job"), calls)
    return {c["name"]: (py[c["name"]], r) for c, r in zip(calls, results)}


def test_run_outputs_match_python_on_padded_inputs(parity):
    for name in ("enc-run-0", "enc-run-1", "enc-run-2", "dec-run", "speech-run"):
        py, js = parity[name]
        js = ok(js)
        for out, want in py.items():
            got = js[out]
            assert got["shape"] == list(want.shape), name
            if want.dtype.kind == "f":
                assert max_abs(got["data"], want.ravel()) <= ATOL, (name, out)
            else:
                assert got["data"] == want.ravel().tolist(), (name, out)


def test_embed_and_classify_match_python(parity):
    for name in ("embed", "embed-raw"):
        py, js = parity[name]
        assert np.asarray(ok(js)["embeddings"]).shape == py.shape
        assert max_abs(ok(js)["embeddings"], py) <= ATOL, name
    py, js = parity["classify"]
    js = ok(js)
    assert js["labels"] == py.labels and js["labelNames"] == py.label_names
    assert js["truncated"] == py.truncated == [4]
    assert max_abs(js["probabilities"], py.probabilities) <= ATOL


def test_js_tokenizer_gives_python_ids_and_text(parity):
    (ids, texts), js = parity["tokenize"]
    assert ok(js)["ids"] == ids
    assert ok(js)["decoded"] == texts


def test_greedy_and_seeded_generation_give_python_tokens(parity):
    for name in ("greedy", "sampled", "hot", "s2s-greedy", "s2s-sampled"):
        py, js = parity[name]
        js = ok(js)
        assert js["tokenIds"] == py.token_ids, name
        assert js["texts"] == py.texts and js["stopReasons"] == py.stop_reasons, name
        assert js["promptIds"] == py.prompt_ids and js["maxNewTokens"] == py.max_new_tokens
    assert len(parity["greedy"][0].token_ids[0]) == 32  # the tiny decoder's <eos> did not cut the greedy case short


def test_stream_cuts_stop_strings_as_python(parity):
    py, js = parity["stop"]
    js = ok(js)
    assert "stop" in py.stop_reasons
    assert js["result"]["texts"] == py.texts and js["result"]["stopReasons"] == py.stop_reasons
    assert js["result"]["tokenIds"] == py.token_ids
    for row, text in enumerate(py.texts):  # the streamed pieces add up to the final text
        assert "".join(step["texts"][row] for step in js["steps"]) == text
    assert [s["finished"] for s in js["steps"]][-1] == [True] * len(py.texts) or len(js["steps"]) == 12


def test_images_and_speech_match_python(parity):
    for name in ("images-hwc", "images-chw", "images-resize"):
        py, js = parity[name]
        js = ok(js)
        assert js["labels"] == py.labels, name
        assert max_abs(js["probabilities"], py.probabilities) <= ATOL, name
    py, js = parity["transcribe"]
    assert ok(js)["texts"] == py and any(py)


def test_keyword_spotter_labels_padded_clips_as_python(parity):
    py, js = parity["classify-audio"]
    js = ok(js)
    assert js["labels"] == py.labels and js["labelNames"] == py.label_names
    assert len(set(py.labels)) > 1  # the clips differ in label, so a row answered for another would show
    assert max_abs(js["probabilities"], py.probabilities) <= ATOL


def test_streams_give_python_logits_call_by_call_and_its_texts(parity):
    for piece in (333, 1280, 5000):
        py, js = parity[f"stream-{piece}"]
        js = ok(js)
        assert [c["text"] for c in js] == [text for text, _ in py], piece
        assert [c["logits"]["shape"] for c in js] == [list(logits.shape) for _, logits in py], piece
        got = np.concatenate([np.asarray(c["logits"]["data"], np.float64) for c in js])
        assert max_abs(got, np.concatenate([logits.ravel() for _, logits in py])) <= STREAM_ATOL, piece
        assert len(py[-1][0]) > 3
    assert len(parity["stream-333"][0][0][1]) == 0  # a piece shorter than a window completes no frame
    py, js = parity["transcribe-stream"]
    assert ok(js)["texts"] == py and len(set(py)) > 3  # the transcript grew piece by piece
    py, js = parity["stream-transcribe"]
    assert ok(js)["texts"] == py and all(py)


def test_verify_reruns_every_recorded_case_as_python_does(parity):
    for name in ("enc", "dec", "s2s", "vit", "speech", "kws", "stream"):
        py, js = parity[f"verify-{name}"]
        js = ok(js)
        assert py.has_vectors and py.passed and js["hasVectors"], name
        assert js["passed"], (name, [c for c in js["cases"] if not c["passed"]])
        assert [(c["name"], c["call"], c["tokensAgree"]) for c in js["cases"]] == \
            [(c.name, c.call, c.tokens_agree) for c in py.cases], name
        assert all(c["maxAbsError"] is None or c["maxAbsError"] <= c["atol"] for c in js["cases"])
        assert js["summary"].startswith(f"all {len(py.cases)} cases passed")


def test_verify_reports_a_changed_answer_and_the_hashes_catch_it(tmp_path, encoder_bundle):
    bad = tmp_path / "bundle"
    shutil.copytree(encoder_bundle.path, bad)
    vectors = json.loads((bad / "vectors.json").read_text())
    case = next(c for c in vectors["cases"] if c["call"] == "classify")
    case["expect"]["labels"][0] = next(x for x in ("a", "b", "c") if x != case["expect"]["labels"][0])
    (bad / "vectors.json").write_text(json.dumps(vectors))
    call = {"bundle": str(bad), "call": "verify", "args": {}}
    hashed, unhashed = run_js(tmp_path, [call, {**call, "load": {"verify": False}}])
    assert hashed["error"] == f"{bad / 'vectors.json'} does not match the sha256 in the manifest; the file was modified or corrupted"
    report = ok(unhashed)
    assert not report["passed"]
    failed = [c for c in report["cases"] if not c["passed"]]
    assert [(c["name"], c["call"], c["detail"]) for c in failed] == [(case["name"], "classify", "labels differs")]
    assert report["summary"].startswith(f"1 of {len(vectors['cases'])} cases failed (first: {case['name']};")


def python_error(fn) -> str:
    with pytest.raises(EdgeformerError) as e:
        fn()
    return str(e.value)


def fed(stream: AudioStream, pieces) -> None:
    for piece in pieces:
        stream.feed(piece)


def test_bad_input_is_refused_in_python_words(tmp_path, encoder_bundle, cached_text_decoder, conformer, vit, spotter):
    enc, dec = runtime.load(encoder_bundle.path), runtime.load(cached_text_decoder[1].path)
    speech, images = runtime.load(conformer), runtime.load(vit)
    kws, stream = runtime.load(spotter), runtime.load(GOLDEN_STREAM)
    ids = [[1, 2, 3]]
    wave, loud, short = clip(3000, 0), np.full(2000, -1.5, np.float32), np.zeros(1000, np.float32)
    finished = AudioStream(stream)
    finished.finish()
    cases = [
        (enc, "run", {"inputs": {"input_ids": ids, "foo": ids}}, lambda: enc({"input_ids": ids, "foo": ids})),
        (enc, "run", {"inputs": {"attention_mask": ids}}, lambda: enc({"attention_mask": ids})),
        (enc, "run", {"inputs": {"input_ids": [1, 2, 3]}}, lambda: enc({"input_ids": [1, 2, 3]})),
        (enc, "run", {"inputs": {"input_ids": [[1, 999]]}}, lambda: enc({"input_ids": [[1, 999]]})),
        (enc, "run", {"inputs": {"input_ids": [[1.5, 2]]}}, lambda: enc({"input_ids": [[1.5, 2]]})),
        (enc, "run", {"inputs": {"input_ids": [[1] * 65]}}, lambda: enc({"input_ids": [[1] * 65]})),
        (enc, "run", {"inputs": {"input_ids": ids, "attention_mask": [[1, 1, 1, 1]]}},
         lambda: enc({"input_ids": ids, "attention_mask": [[1, 1, 1, 1]]})),
        (dec, "generate", {"prompt": "the", "options": {"top_p": 0}}, lambda: dec.generate("the", top_p=0)),
        (dec, "generate", {"prompt": "the", "options": {"temperature": -1}}, lambda: dec.generate("the", temperature=-1)),
        (dec, "generate", {"prompt": "the", "options": {"top_k": -2}}, lambda: dec.generate("the", top_k=-2)),
        (dec, "generate", {"prompt": [5, 6, 7], "options": {"max_new_tokens": 100}},
         lambda: dec.generate([5, 6, 7], max_new_tokens=100)),
        (dec, "generate", {"prompt": [5, 999]}, lambda: dec.generate([5, 999])),
        (dec, "generate", {"prompt": [5], "options": {"stop": ""}}, lambda: dec.generate([5], stop="")),
        (dec, "generate", {"prompt": [5], "options": {"stop": [400]}}, lambda: dec.generate([5], stop=[400])),
        (dec, "generate", {"prompt": [5], "options": {"on_overflow": "wrap"}}, lambda: dec.generate([5], on_overflow="wrap")),
        (dec, "generate", {"prompt": [5], "options": {"max_new_tokens": 0}}, lambda: dec.generate([5], max_new_tokens=0)),
        (dec, "classify", {"texts": ["a"]}, lambda: dec.classify(["a"])),
        (speech, "transcribe", {"waveforms": [tensor(np.zeros(100, np.float32))]},
         lambda: speech.transcribe([np.zeros(100, np.float32)])),
        (images, "classify_images", {"images": tensor(np.zeros((1, 9, 8, 3), np.uint8))},
         lambda: images.classify_images(np.zeros((1, 9, 8, 3), np.uint8))),
        (images, "classify_images", {"images": tensor(np.zeros((1, 3, 8, 8), np.uint8))},
         lambda: images.classify_images(np.zeros((1, 3, 8, 8), np.uint8))),
        (images, "classify_images", {"images": tensor(np.full((1, 8, 8, 3), 2.0, np.float32))},
         lambda: images.classify_images(np.full((1, 8, 8, 3), 2.0, np.float32))),
        (kws, "classify_audio", {"waveforms": [tensor(short)]}, lambda: kws.classify_audio([short])),
        (kws, "classify_audio", {"waveforms": [tensor(wave), tensor(loud)]}, lambda: kws.classify_audio([wave, loud])),
        (kws, "classify_audio", {"waveforms": [tensor(wave)], "sample_rate": 8000},
         lambda: kws.classify_audio([wave], sample_rate=8000)),
        (kws, "classify_audio", {"waveforms": [tensor(wave)], "options": {"batchSize": 0}},
         lambda: kws.classify_audio([wave], batch_size=0)),
        (kws, "transcribe", {"waveforms": [tensor(wave)]}, lambda: kws.transcribe([wave])),
        (speech, "classify_audio", {"waveforms": [tensor(wave)]}, lambda: speech.classify_audio([wave])),
        (speech, "transcribe", {"waveforms": [tensor(loud)]}, lambda: speech.transcribe([loud])),
        (stream, "transcribe", {"waveforms": [tensor(short)]}, lambda: stream.transcribe([short])),
        (stream, "open_stream", {"pieces": [tensor(wave), tensor(loud)]}, lambda: fed(AudioStream(stream), [wave, loud])),
        (stream, "open_stream", {"pieces": [tensor(wave), tensor(np.zeros(0, np.float32))]},
         lambda: fed(AudioStream(stream), [wave, np.zeros(0, np.float32)])),
        (stream, "open_stream", {"pieces": [], "after": [tensor(wave)]}, lambda: finished.feed(wave)),
        (speech, "open_stream", {"pieces": []}, lambda: AudioStream(speech)),
        (stream, "transcribe_stream", {"pieces": [], "sample_rate": 8000},
         lambda: stream.transcribe_stream([], sample_rate=8000)),
        (speech, "transcribe_stream", {"pieces": []}, lambda: speech.transcribe_stream([])),
    ]
    results = run_js(tmp_path, [{"bundle": str(m.bundle.path), "call": c, "args": a} for m, c, a, _ in cases])
    for (_, call, args, fn), got in zip(cases, results):
        assert "error" in got, (call, args, got)
        assert got["error"] == python_error(fn), (call, args)
        assert got["type"] == "InputError" or call == "classify" or "is not a" in got["error"] \
            or "does not stream" in got["error"], (call, args)


def test_a_tampered_file_is_refused_naming_it(tmp_path, encoder_bundle):
    bad = tmp_path / "bundle"
    shutil.copytree(encoder_bundle.path, bad)
    tok = bad / "tokenizer.json"
    tok.write_bytes(tok.read_bytes().replace(b"}", b"} ", 1))  # same JSON, other bytes
    got = run_js(tmp_path, [{"bundle": str(bad), "call": "classify", "args": {"texts": ["a"]}}])[0]
    assert got["type"] == "BundleError"
    assert got["error"] == f"{tok} does not match the sha256 in the manifest; the file was modified or corrupted"
    shutil.copy(encoder_bundle.path / "tokenizer.json", tok)
    (bad / "model.onnx").unlink()
    got = run_js(tmp_path, [{"bundle": str(bad), "call": "classify", "args": {"texts": ["a"]}}])[0]
    assert got["error"] == f"{bad / 'model.onnx'} is listed in the manifest but missing; the bundle is incomplete"


def test_node_unit_tests_pass():
    ensure_node_modules()
    proc = subprocess.run([NODE, "--test", str(WEB / "test")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
