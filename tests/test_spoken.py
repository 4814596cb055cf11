"""The spoken-digits data: espeak-ng voices split into heard and held-out, synthesis, augmentation."""

import json

import numpy as np
import pytest

from edgeformer.tasks import spoken
from edgeformer.tasks.speech import SAMPLE_RATE


@pytest.fixture(scope="module")
def variants():
    return spoken.Espeak.get().variants()


def test_the_voice_split_is_fixed_and_disjoint(variants):
    train, held = spoken.voice_split(variants)
    assert (train, held) == spoken.voice_split(variants)
    assert not set(train) & set(held) and len(held) >= len(variants) // 6 and len(train) > 3 * len(held)
    assert not set(spoken.SAME_AS_ANOTHER) & (set(train) | set(held))
    rng = np.random.default_rng(0)
    heard = [spoken.draw_voice(rng, True, variants) for _ in range(300)]
    assert all(v.base != spoken.HELD_OUT_BASE and v.variant not in held for v in heard)
    unheard = [spoken.draw_voice(rng, False, variants) for _ in range(300)]
    assert all(v.base == spoken.HELD_OUT_BASE or v.variant in held for v in unheard)
    assert {v.base == spoken.HELD_OUT_BASE for v in unheard} == {True, False}


def test_a_voice_espeak_would_replace_is_refused():
    voice = spoken.Voice("en-US", "nosuchvariant", 170, 50, 1)
    with pytest.raises(spoken.SpeechSynthesisError, match=r"no voice 'gmw/en-US\+nosuchvariant' \(it offered 'gmw/en-US'\)"):
        spoken.Espeak.get().speak("one", voice)


def test_every_base_voice_and_variant_speaks(variants):
    speaker = spoken.Espeak.get()
    train, held = spoken.voice_split(variants)
    for base in spoken.BASE_VOICES:
        assert len(speaker.speak("seven", spoken.Voice(base, None, 170, 50, 0))) > 0.2 * SAMPLE_RATE
    for variant in train[::10] + held[::5]:
        assert len(speaker.speak("seven", spoken.Voice("en-US", variant, 170, 50, 0))) > 0.2 * SAMPLE_RATE


def test_utterances_are_16k_within_range_and_seeded():
    a = [spoken.synthesize(np.random.default_rng(7)) for _ in range(2)]  # espeak-ng varies a few samples per call
    assert (a[0].text, a[0].voice, a[0].snr_db) == (a[1].text, a[1].voice, a[1].snr_db)
    assert abs(len(a[0].waveform) - len(a[1].waveform)) < 0.01 * len(a[0].waveform)
    rng = np.random.default_rng(1)
    for u in [spoken.synthesize(rng) for _ in range(12)]:
        assert u.waveform.dtype == np.float32 and np.abs(u.waveform).max() <= 0.9 + 1e-6
        assert 0.3 * SAMPLE_RATE < len(u.waveform) <= spoken.MAX_SECONDS * SAMPLE_RATE
        assert set(u.text) <= set(spoken.ALPHABET) and 1 <= len(u.text) <= spoken.MAX_DIGITS
    # a longer string takes longer to say, in the same voice
    short, long = (spoken.synthesize(np.random.default_rng(3), d, noisy=False) for d in ("1", "12345678"))
    assert short.voice == long.voice and len(long.waveform) > 2 * len(short.waveform)


def test_noise_is_added_at_the_snr_asked_for():
    rng = np.random.default_rng(0)
    x = np.sin(np.arange(16000) / 5.0)
    for snr in (0.0, 10.0, 30.0):
        noise = spoken.pink(len(x), rng)
        y = spoken.with_noise(x, noise, snr)
        measured = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
        assert abs(measured - snr) < 1e-6


def test_telephone_band_and_speed():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    low, mid = np.sin(2 * np.pi * 100 * t), np.sin(2 * np.pi * 1000 * t)
    assert np.abs(spoken.telephone(low)).max() < 1e-6 and np.allclose(spoken.telephone(mid), mid, atol=1e-6)
    assert len(spoken.speed(mid, 1.1)) == round(SAMPLE_RATE / 1.1) and len(spoken.speed(mid, 0.9)) == round(SAMPLE_RATE / 0.9)


def test_the_held_out_set_is_fixed_half_unheard_and_spread_over_snr():
    a, b = spoken.held_out(20), spoken.held_out(20)
    assert [(u.text, u.voice, u.snr_db) for u in a] == [(u.text, u.voice, u.snr_db) for u in b]
    assert sum(not u.seen_voice for u in a) == 10 and sum(u.snr_db is None for u in a) == 2
    assert {spoken.snr_bucket(u) for u in a} >= {"clean", "0-10 dB", "10-20 dB", "20-30 dB"}


def test_a_conformer_trains_on_spoken_digits_and_its_bundle_is_measured_on_them(tmp_path):
    from edgeformer import runtime
    from edgeformer.export import export_bundle
    from edgeformer.modeling.training.loop import TrainConfig
    from edgeformer.modeling.training.speech import train_conformer_checkpoint
    from edgeformer.quantize.builtin import media_eval_set

    tc = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=4)
    small = dict(d_model=32, n_heads=2, n_layers=1, d_ff=64, conv_kernel=5)
    result = train_conformer_checkpoint(tmp_path / "ckpt", "tiny", "spoken-digits", tc=tc, overrides=small,
                                        progress=False, eval_utterances=8)
    final = result.history[-1]
    assert {"eval_cer", "eval_cer_heard_voices", "eval_cer_unheard_voices"} <= set(final)
    assert json.loads((tmp_path / "ckpt" / "training.json").read_text())["task"] == "spoken-digits"
    export_bundle(tmp_path / "ckpt", tmp_path / "bundle")
    bundle = runtime.load(tmp_path / "bundle")
    assert bundle.manifest.model.checkpoint["task"] == "spoken-digits"
    eval_set = media_eval_set(bundle)  # the spoken held-out set, not the touch-tone one
    assert [t for batch in eval_set.targets for t in batch][:4] == [u.text for u in spoken.held_out(4)]


def test_an_unknown_speech_task_is_refused_by_name(tmp_path):
    from edgeformer.modeling.training.speech import train_conformer_checkpoint
    from edgeformer.tasks.text import DataError

    with pytest.raises(DataError, match="unknown speech task 'spoken-words'; expected one of: audio-digits, spoken-digits"):
        train_conformer_checkpoint(tmp_path / "x", task="spoken-words")
    assert not (tmp_path / "x").exists()
