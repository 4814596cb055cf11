"""The Conformer: log-mel features (PyTorch, numpy and the ONNX graph agree), export with fused attention and
parity on padded audio, CTC training, `transcribe` and `run --audio`, and every bad recording refused in one line."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgeformer import runtime
from edgeformer.export.checks import op_counts
from edgeformer.modeling.models.audio import LogMel, frame_count, reference_log_mel
from edgeformer.modeling.checkpoint import save
from edgeformer.modeling.models.conformer import Conformer
from edgeformer.modeling.training.speech import SpeechTask, batch_of, conformer_config
from edgeformer.tasks.speech import held_out, synthesize
from edgeformer.runtime.errors import InputError
from edgeformer.runtime.speech import character_error_rate, ctc_greedy, write_wav

from .test_cli import assert_bad_input, cli

TINY = dict(d_model=32, n_heads=2, n_layers=2, d_ff=64, conv_kernel=5, dropout=0.0)


def tone(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return (0.4 * np.sin(2 * np.pi * 941 * t) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def with_batch_norm_statistics(model: Conformer) -> Conformer:
    """`model` with BatchNorm statistics that are not the identity, so exporting them is checked too."""
    for block in model.blocks:
        block.conv.batch_norm.running_mean.normal_(0, 0.5)
        block.conv.batch_norm.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """A random tiny Conformer with non-trivial BatchNorm statistics, exported (parity gate included)."""
    from edgeformer.export import export_bundle

    d = tmp_path_factory.mktemp("speech")
    torch.manual_seed(0)
    model = with_batch_norm_statistics(Conformer(conformer_config("tiny", **TINY)).eval())
    save(model, d / "ckpt")
    result = export_bundle(d / "ckpt", d / "bundle")
    return d, model, result


def test_log_mel_matches_a_numpy_fft_reference():
    mel = LogMel()
    for n in (400, 1361, 16000 + 77):
        w = tone(n)
        w[n // 2:] *= 1e-3  # quiet half: the log floor region
        features, frames = mel(torch.from_numpy(w)[None], torch.tensor([n]))
        assert int(frames[0]) == (n - 400) // 160 + 1 == features.shape[1]
        assert np.abs(features[0].numpy() - reference_log_mel(w)).max() <= 1e-4


def test_graph_features_equal_pytorch_features(tmp_path):
    """The front end as the exporter writes it into every speech graph, against PyTorch, at several lengths."""
    mel = LogMel().eval()

    class Features(torch.nn.Module):
        def forward(self, waveforms, lengths):
            return mel(waveforms, lengths)

    auto = torch.export.Dim.AUTO
    program = torch.onnx.export(Features().eval(), (torch.randn(2, 5000), torch.tensor([5000, 3000])), dynamo=True,
                                opset_version=23, input_names=["waveforms", "lengths"], output_names=["features", "frames"],
                                dynamic_shapes=({0: auto, 1: auto}, {0: auto}), verbose=False, report=False)
    program.save(str(tmp_path / "features.onnx"))
    session = ort.InferenceSession(str(tmp_path / "features.onnx"))
    for n in (400, 1999, 16000):
        w = np.stack([tone(n, 1), tone(n, 2)])
        got = session.run(None, {"waveforms": w, "lengths": np.array([n, n], dtype=np.int64)})
        ref, frames = mel(torch.from_numpy(w), torch.tensor([n, n]))
        assert np.abs(got[0] - ref.numpy()).max() <= 1e-4 and np.array_equal(got[1], frames.numpy())


def test_export_fuses_attention_and_passes_parity_on_padded_audio(speech):
    d, model, result = speech
    assert op_counts(onnx.load(str(d / "bundle" / "model.onnx")))["Attention"] == 2
    report = result.report
    assert report.passed and report.atol == 1e-4
    assert any(c.padded for c in report.cases) and {c.seq for c in report.cases} >= {1360, 4321, 8011}
    assert report.worst["logit_lengths"].max_abs == 0
    manifest = result.manifest
    assert [s.name for s in manifest.inputs] == ["waveforms", "lengths"] and manifest.model.task == "speech-recognition"


def test_padding_never_changes_a_row(speech):
    """Depthwise convolution, subsampling and attention at every length: a row alone equals the row in a padded batch."""
    _, model, _ = speech
    waves = [tone(n, n) for n in (1360, 1361, 1521, 2000, 5555)]
    padded = np.zeros((len(waves), 5555), np.float32)
    for i, w in enumerate(waves):
        padded[i, : len(w)] = w
    lengths = torch.tensor([len(w) for w in waves])
    with torch.no_grad():
        batch = model(torch.from_numpy(padded), lengths)
        for i, w in enumerate(waves):
            alone = model(torch.from_numpy(w)[None], lengths[i : i + 1])
            n = int(alone["logit_lengths"][0])
            assert n == int(batch["logit_lengths"][i]) >= 1
            assert (alone["logits"][0] - batch["logits"][i, :n]).abs().max() <= 1e-4


def test_ctc_training_step_fits_a_batch_and_greedy_decoding_scores():
    torch.manual_seed(0)
    model = Conformer(conformer_config("tiny", **TINY))
    rng = np.random.default_rng(0)
    batch = batch_of([synthesize(rng, digits) for digits in ("12", "7")], model.cfg.speech.alphabet)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(15):
        loss = SpeechTask.loss(model, *batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
    blank = np.zeros((1, 10, 11), np.float32)
    blank[..., 0] = 1.0
    assert ctc_greedy(blank, np.array([10])) == [[]]
    assert character_error_rate([""], ["123"]) == 1.0 and character_error_rate(["124"], ["123"]) == pytest.approx(1 / 3)
    assert ctc_greedy(np.eye(11, dtype=np.float32)[[1, 1, 0, 1, 2, 2]][None], np.array([6])) == [[1, 1, 2]]


def test_held_out_task_is_fixed_and_unlike_training():
    a, b = held_out(5), held_out(5)
    assert [u.text for u in a] == [u.text for u in b] and np.array_equal(a[0].waveform, b[0].waveform)
    assert all(1 <= len(u.text) <= 6 and u.waveform.dtype == np.float32 and np.abs(u.waveform).max() <= 1.0 for u in a)


def test_transcribe_batches_like_single_recordings(speech):
    d, model, _ = speech
    bundle = runtime.load(d / "bundle")
    waves = [u.waveform for u in held_out(3)]
    texts = bundle.transcribe(waves)
    assert texts == [bundle.transcribe(w)[0] for w in waves] and all(isinstance(t, str) for t in texts)
    with torch.no_grad():
        out = model(*batch_of(held_out(3), model.cfg.speech.alphabet)[:2])
    ids = ctc_greedy(out["logits"].numpy(), out["logit_lengths"].numpy())
    assert texts == ["".join(model.cfg.speech.alphabet[i - 1] for i in row) for row in ids]


@pytest.mark.parametrize("waveforms, kwargs, message", [
    (tone(16000), {"sample_rate": 44100}, "sample rate 44100 Hz; this model reads 16000 Hz"),
    (np.zeros((16000, 2), np.float32), {}, "expected mono audio"),
    ([np.zeros(0, np.float32)], {}, "waveform 0 is empty"),
    ([tone(800)], {}, "this model needs at least 1360"),
    ([tone(160240 + 1)], {}, "this model accepts at most 160240"),
    ([np.full(2000, np.nan, np.float32)], {}, "NaN or infinite sample at index 0"),
    ([np.zeros(2000, np.int16)], {}, "expected float samples in [-1, 1]"),
    ([], {}, "no waveforms given"),
])
def test_transcribe_refuses_bad_audio_in_one_line(speech, waveforms, kwargs, message):
    bundle = runtime.load(speech[0] / "bundle")
    with pytest.raises(InputError) as e:
        bundle.transcribe(waveforms, **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_run_audio_file_and_bad_files(speech, tmp_path):
    import wave

    d, _, _ = speech
    w = held_out(1)[0].waveform
    write_wav(tmp_path / "a.wav", w)
    out = json.loads(cli("run", d / "bundle", "--audio", tmp_path / "a.wav", "--json", "-").stdout)
    pcm = np.round(w.astype(np.float64) * 32767).astype(np.int16).astype(np.float32) / 32768  # what the file holds
    assert out["texts"] == runtime.load(d / "bundle").transcribe(pcm) and out["real_time_factor"][0] > 0
    with wave.open(str(tmp_path / "stereo.wav"), "wb") as f:
        f.setnchannels(2), f.setsampwidth(2), f.setframerate(16000), f.writeframes(np.zeros(8000, "<i2").tobytes())
    assert_bad_input(cli("run", d / "bundle", "--audio", tmp_path / "stereo.wav", ok=False), "expected mono audio")
    write_wav(tmp_path / "fast.wav", w, sample_rate=8000)
    assert_bad_input(cli("run", d / "bundle", "--audio", tmp_path / "fast.wav", ok=False), "sample rate 8000 Hz")
    (tmp_path / "x.wav").write_bytes(b"RIFF....")
    assert_bad_input(cli("run", d / "bundle", "--audio", tmp_path / "x.wav", ok=False), "cannot read")


def test_frame_count_never_reads_past_a_row():
    n = torch.tensor([399, 400, 559, 560, 16000])
    assert frame_count(n).tolist() == [0, 1, 1, 2, 98]
