"""Spoken commands: keyword spotting over the Speech Commands benchmark's 12 labels, spoken by espeak-ng;
a Conformer that labels clips (its frames pooled) trains, exports behind its parity gate, answers
`classify_audio` and `run --audio`, quantizes on accuracy, and refuses what does not fit in one line."""

import json

import numpy as np
import pytest
import torch

from edgeformer import runtime
from edgeformer.export import export_bundle
from edgeformer.modeling import ModelConfig
from edgeformer.modeling.checkpoint import save
from edgeformer.modeling.config import ConfigError
from edgeformer.modeling.models.conformer import Conformer
from edgeformer.modeling.training.speech import SpeechTask, conformer_config, label_batch
from edgeformer.runtime.errors import EdgeformerError, InputError
from edgeformer.runtime.speech import write_wav
from edgeformer.runtime.vectors import verify_vectors
from edgeformer.tasks import spoken_commands as commands
from edgeformer.tasks.speech import SAMPLE_RATE

from .test_cli import assert_bad_input, cli
from .test_speech import TINY, with_batch_norm_statistics


@pytest.fixture(scope="module")
def spotter(tmp_path_factory):
    d = tmp_path_factory.mktemp("kws")
    torch.manual_seed(0)
    model = with_batch_norm_statistics(Conformer(conformer_config("tiny", labels=commands.LABELS, **TINY)).eval())
    save(model, d / "ckpt")
    result = export_bundle(d / "ckpt", d / "bundle")
    return d, model, result, runtime.load(d / "bundle")


def test_clips_are_a_word_in_a_second_and_the_held_out_set_is_fixed():
    a, b = commands.held_out(24), commands.held_out(24)
    assert [(u.text, u.voice, u.snr_db) for u in a] == [(u.text, u.voice, u.snr_db) for u in b]
    assert [u.text for u in a[:12]] == list(commands.LABELS) and sum(not u.seen_voice for u in a) == 12
    assert all(SAMPLE_RATE <= len(u.waveform) <= commands.MAX_SECONDS * SAMPLE_RATE for u in a)
    silence, word = a[11].waveform, a[0].waveform
    assert np.abs(silence).max() > 0 and a[11].snr_db is None  # noise alone, no SNR to speak of
    assert np.abs(word).max() <= 1.0 and len(commands.LABELS) == 12
    labels = [commands.synthesize(np.random.default_rng(i)).text for i in range(60)]
    assert len(set(labels)) >= 10  # the labels are drawn equally often


def test_a_spotter_config_has_labels_and_no_alphabet():
    cfg = conformer_config("tiny", labels=commands.LABELS)
    assert (cfg.task, cfg.num_labels, cfg.speech.alphabet) == ("audio-classification", 12, None)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="names its labels, and has no CTC alphabet and no streaming"):
        cfg.with_fields(alphabet="0123")
    with pytest.raises(ConfigError, match="names its labels, and has no CTC alphabet and no streaming"):
        cfg.with_fields(streaming=True)


def test_a_training_step_lowers_the_loss_and_evaluation_reports_groups():
    cfg = conformer_config("tiny", labels=commands.LABELS, **TINY)
    torch.manual_seed(0)
    model = Conformer(cfg)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    batch = label_batch([commands.synthesize(np.random.default_rng(i)) for i in range(8)], commands.LABELS)
    losses = []
    for _ in range(10):
        loss = SpeechTask.loss(model, *batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    from edgeformer.modeling.training.speech import evaluate_accuracy

    metrics = evaluate_accuracy(model, commands.held_out(24))
    assert {"eval_accuracy", "eval_accuracy_heard_voices", "eval_accuracy_unheard_voices", "eval_accuracy_0-10_dB"} <= set(metrics)
    assert 0 <= metrics["eval_accuracy"] <= 1


def test_export_classify_audio_vectors_and_run(spotter, tmp_path):
    d, model, result, bundle = spotter
    assert result.report.passed and result.report.worst["logits"].max_abs < 1e-4
    assert [s.name for s in bundle.manifest.outputs] == ["logits"] and bundle.manifest.modality == "audio"
    clips = [u.waveform for u in commands.held_out(3)]
    got = bundle.classify_audio(clips)
    with torch.no_grad():
        for clip, p in zip(clips, got.probabilities):
            ref = model(torch.from_numpy(clip)[None], torch.tensor([len(clip)]))["logits"].softmax(-1)[0].numpy()
            assert np.abs(p - ref).max() < 1e-4
    one = bundle.classify_audio(clips[1])  # a clip alone gives what it gives in a padded batch
    assert np.abs(one.probabilities[0] - got.probabilities[1]).max() < 1e-5
    assert got.label_names == list(commands.LABELS) and all(label in commands.LABELS for label in got.labels)
    assert verify_vectors(bundle).passed
    write_wav(tmp_path / "a.wav", clips[0], SAMPLE_RATE)
    out = json.loads(cli("run", d / "bundle", "--audio", tmp_path / "a.wav", "--json", "-").stdout)
    assert out["labels"] == [got.labels[0]]
    with pytest.raises(EdgeformerError, match="is not a speech recognition model .*use classify_audio"):
        bundle.transcribe(clips)
    with pytest.raises(InputError, match="has a NaN or infinite sample"):
        bundle.classify_audio([np.full(16000, np.nan, np.float32)])
    assert_bad_input(cli("run", d / "bundle", "--audio", tmp_path / "a.wav", "--stream", ok=False), "does not stream")


def test_int8_is_measured_on_accuracy_and_deploys_to_android(spotter, tmp_path):
    from edgeformer.deploy import deploy
    from edgeformer.quantize import quantize_bundle
    from edgeformer.quantize.builtin import media_eval_set

    d, _, _, bundle = spotter
    (d / "ckpt" / "training.json").write_text(json.dumps({"task": "spoken-commands"}))
    export_bundle(d / "ckpt", d / "recorded", overwrite=True)
    data = media_eval_set(runtime.load(d / "recorded").bundle)
    assert data.rows == 200 and data.targets[0][:3] == ["yes", "no", "up"]
    result = quantize_bundle(d / "recorded", tmp_path / "q", "int8-dynamic", data=data.subset(32), smooth_alpha=None)
    q = runtime.load(tmp_path / "q").classify_audio(data.feeds[0]["waveforms"][0][:16000])
    assert result.fidelity.metric == "accuracy" and q.labels[0] in commands.LABELS
    phone = deploy(d / "bundle", "android", tmp_path / "android")  # pooled logits near 2: the .ort check scales with them
    assert phone.manifest.deploy.checks[0]["passed"] and phone.manifest.deploy.checks[0]["values"]["atol"] == 1e-6


def test_a_spotter_and_a_streaming_recogniser_distil_into_students_of_their_kind(spotter, tmp_path):
    from edgeformer.modeling.checkpoint import load
    from edgeformer.modeling.distillation.media import distill_media_checkpoint
    from edgeformer.modeling.training.loop import TrainConfig

    from .test_speech_stream import streaming_conformer

    tc = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=4)
    (spotter[0] / "ckpt" / "training.json").write_text(json.dumps({"task": "spoken-commands"}))
    result = distill_media_checkpoint(spotter[0] / "ckpt", "tiny", tmp_path / "kws-student", tc=tc, layers=1,
                                      progress=False)
    student = load(tmp_path / "kws-student").cfg
    assert result.metric == "accuracy" and 0 <= result.student_metric <= 1
    assert (student.labels, student.n_layers, student.task) == (list(commands.LABELS), 1, "audio-classification")
    save(streaming_conformer(), tmp_path / "stream-teacher")
    distill_media_checkpoint(tmp_path / "stream-teacher", "tiny", tmp_path / "stream-student", tc=tc, layers=1,
                             progress=False)
    assert load(tmp_path / "stream-student").cfg.speech.streaming
