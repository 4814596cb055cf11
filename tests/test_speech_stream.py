"""Streaming speech: a Conformer trained to stream (causal convolution, chunked attention), its step with
caches equal to the offline model with the same chunked attention, `export --streaming` (bundle kind
streaming-speech, format 4) with its parity gate, the runtime's stream driver on pieces of any size,
`run --audio --stream`, int8 measured on streams, arm64 and the web, and every bad input refused in one line."""

import json

import numpy as np
import onnx
import pytest
import torch

from edgeformer import runtime
from edgeformer.export import export_bundle
from edgeformer.export.checks import op_counts
from edgeformer.export.onnx import ExportError
from edgeformer.modeling import ModelConfig, Transformer
from edgeformer.modeling.checkpoint import save
from edgeformer.modeling.models.conformer import Conformer, chunk_mask, random_context
from edgeformer.modeling.models.conformer_stream import ConformerStream, StreamGeometry
from edgeformer.modeling.training.speech import SpeechTask, batch_of, conformer_config
from edgeformer.runtime.errors import EdgeformerError, InputError
from edgeformer.runtime.speech import write_wav
from edgeformer.runtime.speech_stream import AudioStream, output_frames, stream_logits
from edgeformer.runtime.vectors import verify_vectors
from edgeformer.tasks.speech import synthesize

from .conftest import TINY as TEXT_TINY
from .test_cli import assert_bad_input, cli
from .test_speech import TINY, tone, with_batch_norm_statistics

GEOMETRY = StreamGeometry(chunk=2, left_chunks=3)  # 80 ms chunks, 240 ms of attention past: many steps per clip


def streaming_conformer(seed: int = 0) -> Conformer:
    torch.manual_seed(seed)
    return with_batch_norm_statistics(Conformer(conformer_config("tiny", **TINY, streaming=True)).eval())


@pytest.fixture(scope="module")
def streaming(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    model = streaming_conformer()
    save(model, d / "ckpt")
    result = export_bundle(d / "ckpt", d / "bundle", stream=GEOMETRY)
    return d, model, result, runtime.load(d / "bundle")


def test_chunk_mask_reads_its_own_chunk_and_a_bounded_past():
    m = chunk_mask(7, chunk=2, left_chunks=1)
    assert m[0].tolist() == [True, True, False, False, False, False, False]  # frame 0 sees its whole chunk
    assert m[4].tolist() == [False, False, True, True, True, True, False]  # chunk 2: itself and chunk 1
    assert chunk_mask(5, 2, None)[4].tolist() == [True] * 5
    torch.manual_seed(0)
    contexts = [random_context() for _ in range(400)]
    assert 150 < sum(c is None for c in contexts) < 250  # the whole utterance about half the time
    assert {c[0] for c in contexts if c} == set(range(1, 17)) and None in {c[1] for c in contexts if c}


@pytest.mark.parametrize("geometry, samples", [(StreamGeometry(1, 1), 5000), (StreamGeometry(4, 2), 23457),
                                               (StreamGeometry(3, 8), 9000)])
def test_the_step_equals_the_offline_model_with_chunked_attention(geometry, samples):
    model = streaming_conformer(1)
    step = ConformerStream(model, geometry)
    wave = torch.from_numpy(tone(samples, 3)) [None]
    with torch.no_grad():
        ref = model.encode(*model.features(wave, torch.tensor([samples])), context=(geometry.chunk, geometry.left_chunks))
        ref = ref["logits"][0]
        state = [torch.zeros(s) for s in step.cache_shapes(1).values()]
        keys, values, history, cached, got, start = *state, torch.zeros(1, dtype=torch.long), [], 0
        while sum(len(g) for g in got) < len(ref):
            window = torch.nn.functional.pad(wave[:, start : start + geometry.window_samples],
                                             (0, max(0, start + geometry.window_samples - samples)))
            valid = min(geometry.chunk, len(ref) - sum(len(g) for g in got))
            logits, keys, values, cached, history = step(window, torch.tensor([valid]), keys, values, cached, history)
            got.append(logits[0, :valid])
            start += geometry.hop_samples
    assert output_frames(samples, geometry.window_samples, geometry.hop_samples, geometry.chunk) == len(ref)
    assert torch.allclose(torch.cat(got), ref, atol=1e-5)
    full = model.encode(*model.features(wave, torch.tensor([samples])))["logits"][0]
    assert (full - ref).abs().max() > 1e-3  # the chunked context is not the whole utterance's


def test_streaming_training_draws_chunked_contexts_and_learns():
    cfg = conformer_config("tiny", **TINY, streaming=True)
    torch.manual_seed(0)
    model = Conformer(cfg)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    batch = batch_of([synthesize(np.random.default_rng(i)) for i in range(4)], cfg.speech.alphabet)
    losses = []
    for _ in range(12):
        loss = SpeechTask.loss(model, *batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]
    assert cfg.to_dict()["streaming"] is True and "streaming" not in conformer_config("tiny").to_dict()
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_export_writes_a_streaming_bundle_that_passes_its_gate(streaming):
    d, model, result, bundle = streaming
    m = bundle.manifest
    assert result.report.passed and result.report.worst["logits"].max_abs < 1e-5
    assert [c.seq for c in result.report.cases][-1] > GEOMETRY.window_samples + GEOMETRY.left_chunks * GEOMETRY.hop_samples
    assert (m.kind, m.format_version, m.modality) == ("streaming-speech", 4, "audio")
    assert (m.model.stream.chunk_frames, m.model.stream.left_chunks) == (2, 3)
    assert (m.model.stream.window_samples, m.model.stream.hop_samples) == (2 * 640 + 720, 1280)
    assert m.model.stream.state == ["keys", "values", "cached_frames", "conv_history"]
    assert op_counts(onnx.load(str(d / "bundle" / "model.onnx"))).get("Attention") == TINY["n_layers"]
    assert verify_vectors(bundle).passed


def test_pieces_of_any_size_give_the_same_logits_and_growing_transcripts(streaming):
    _, model, _, bundle = streaming
    wave = tone(7001, 5)
    whole = stream_logits(bundle, wave, len(wave))
    for piece in (1, 333, 1280, 5000):
        assert np.allclose(stream_logits(bundle, wave, piece), whole, atol=1e-6)
    with torch.no_grad():
        ref = model.encode(*model.features(torch.from_numpy(wave)[None], torch.tensor([len(wave)])),
                           context=(GEOMETRY.chunk, GEOMETRY.left_chunks))["logits"][0].numpy()
    assert np.abs(whole - ref).max() < 1e-4
    partials = list(bundle.transcribe_stream(wave[i : i + 900] for i in range(0, len(wave), 900)))
    assert len(partials) == 9
    assert all(b.startswith(a) for a, b in zip(partials, partials[1:]))  # a stream's text only grows
    assert partials[-1] == bundle.transcribe([wave])[0] != ""


@pytest.mark.parametrize("pieces, message", [
    ([np.full(2000, np.nan, np.float32)], "has a NaN or infinite sample at index 0"),
    ([np.zeros((2, 100), np.float32)], "expected mono audio"),
    ([np.zeros(100, np.int16)], "has dtype int16; expected float samples"),
    ([np.zeros(100, np.float32), np.zeros(0, np.float32)], "waveform 1 is empty"),
    (np.zeros(100, np.float32), "expected an iterable of 1-D sample arrays"),
])
def test_bad_pieces_are_refused_in_one_line(streaming, pieces, message):
    with pytest.raises(InputError, match=message):
        list(streaming[3].transcribe_stream(pieces))


def test_a_finished_stream_and_other_bundles_refuse(streaming, tmp_path):
    bundle = streaming[3]
    stream = AudioStream(bundle)
    stream.feed(tone(3000))
    stream.finish()
    with pytest.raises(InputError, match="this stream is finished"):
        stream.feed(tone(100))
    with pytest.raises(InputError, match="sample rate 8000"):  # at the call, before any piece is read
        bundle.transcribe_stream(iter(()), sample_rate=8000)
    with pytest.raises(InputError, match="this model needs at least 1360"):
        bundle.transcribe([tone(1000)])
    offline = Conformer(conformer_config("tiny", **TINY)).eval()
    save(offline, tmp_path / "offline")
    with pytest.raises(ExportError, match="convolution is centred.*--streaming needs one trained to stream"):
        export_bundle(tmp_path / "offline", tmp_path / "b1", stream=GEOMETRY)
    save(Transformer(ModelConfig.from_dict(TEXT_TINY)), tmp_path / "encoder")
    with pytest.raises(ExportError, match="--streaming is for speech recognisers"):
        export_bundle(tmp_path / "encoder", tmp_path / "b2", stream=GEOMETRY)
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b2").exists()
    export_bundle(tmp_path / "offline", tmp_path / "whole")
    with pytest.raises(EdgeformerError, match="does not stream .*export the Conformer with --streaming"):
        runtime.load(tmp_path / "whole").transcribe_stream(iter(()))


def test_cli_streams_a_wav_file_and_refuses_bad_options(streaming, tmp_path):
    d, _, _, bundle = streaming
    write_wav(tmp_path / "a.wav", tone(9000), 16000)
    proc = cli("run", d / "bundle", "--audio", tmp_path / "a.wav", "--stream", "--json", "-")
    got = json.loads(proc.stdout)["files"][0]
    assert got["text"] == bundle.transcribe([tone(9000)])[0] and got["chunk_ms"] == 80
    assert got["partials"][-1]["text"] == got["text"] and got["compute_ms_median"] > 0
    assert_bad_input(cli("run", d / "bundle", "--stream", ok=False), "--stream transcribes --audio files")
    assert_bad_input(cli("export", d / "ckpt", "--out", tmp_path / "x", "--left-chunks", "4", ok=False),
                     "--left-chunks cut a stream; add --streaming")
    assert_bad_input(cli("export", d / "ckpt", "--out", tmp_path / "x", "--streaming", "--chunk-ms", "100", ok=False),
                     "--chunk-ms 100; expected a multiple of 40")
    assert_bad_input(cli("train", "--arch", "encoder", "--streaming", "--out", tmp_path / "t", ok=False),
                     "--streaming/--no-streaming is for speech recognisers")
    assert not (tmp_path / "x").exists() and not (tmp_path / "t").exists()


def test_int8_is_measured_on_streams_and_deploys_to_the_web_and_arm64(streaming, tmp_path):
    from edgeformer.deploy import deploy
    from edgeformer.deploy.web import WEB_DIR, chromium_path, node_path
    from edgeformer.deploy.web_check import run_browser
    from edgeformer.quantize.builtin import media_eval_set
    from edgeformer.quantize.media import StreamEvalSet
    from edgeformer.quantize import quantize_bundle

    from .test_deploy_web import SETUP, assert_checked

    d, _, _, bundle = streaming
    data = media_eval_set(bundle.bundle)
    assert isinstance(data, StreamEvalSet) and data.rows == 200 and set(data.calibration[0]) == {s.name for s in bundle.manifest.inputs}
    result = quantize_bundle(d / "bundle", tmp_path / "q", "int8-dynamic", data=data.subset(16), smooth_alpha=None)
    q = runtime.load(tmp_path / "q")
    assert result.fidelity.metric == "CER" and q.manifest.kind == "streaming-speech" and q.manifest.model.stream is not None
    assert len(q.transcribe([tone(5000)])) == 1
    deploy(d / "bundle", "arm64", tmp_path / "arm")
    assert runtime.load(tmp_path / "arm").manifest.kind == "streaming-speech"
    if SETUP is not None:
        pytest.skip(f"browser checks cannot run here: {SETUP}")
    # The web folder: one recording fed in pieces of irregular sizes through openStream and transcribeStream
    # in Chromium gives Python's text after every call and its logits within 1e-5; whole clips, its transcripts.
    web = deploy(d / "bundle", "web", tmp_path / "web")
    checks = assert_checked(web, "stream in Chromium vs Python", "transcripts in Chromium vs Python")
    assert "stream" in checks["outputs in Chromium vs Python"].values["calls"]
    assert checks["stream in Chromium vs Python"].values["frames"] > 10 and checks["stream in Chromium vs Python"].values["text"]
    readme = (web.path / "README.md").read_text()
    assert "model.openStream()" in readme and "model.transcribeStream(pieces, 16000)" in readme
    # The demo page streams a picked WAV file in 100 ms pieces.
    write_wav(tmp_path / "a.wav", tone(9000), 16000)
    steps = [{"upload": ["#audio-file", str(tmp_path / "a.wav")]}, {"wait": "#audio-speed:not(:empty)"}]
    shot = run_browser(web.path, [], {}, chromium_path(), node_path(), WEB_DIR,
                       {"path": str(tmp_path / "page.png"), "steps": steps})["screenshot"]
    assert "answers" in shot and not shot["problems"], shot
