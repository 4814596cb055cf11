"""Spoken digits: digit strings said by espeak-ng in many voices, and voices kept for evaluation only; no PyTorch.

espeak-ng (the `espeakng-loader` wheel carries its library and data, so `pip install` sets it up)
speaks in-process through ctypes at 22,050 Hz; each clip is resampled to 16 kHz. A voice is a base
accent and a variant (the `voices/!v` files: m1-m8, f1-f5, croak, whisper, klatt, ...), spoken at a
rate, pitch and word gap of its own:

    training voices      7 base accents x 80 % of the variants
    held-out voices      the base accent HELD_OUT_BASE (with any variant), and the other 20 % of the
                         variants (with any accent): fixed by HELD_OUT_SEED, never heard in training

Augmentation in numpy, each with its probability: speed perturbation (0.9-1.1), room reverberation,
a telephone band (300-3400 Hz), additive noise at 0-30 dB SNR (white, pink, or babble made from
other utterances), gain. The utterance records its voice and its SNR, so the evaluation can be
reported for seen and unseen voices and by SNR bucket.

The text is the digit string ("307"); the words spoken are "three oh seven" or "three zero seven"
(some voices say "oh" for zero).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .speech import SAMPLE_RATE, Utterance, reverberate

ALPHABET = "0123456789"
WORDS = {"0": ("zero", "oh"), "1": ("one",), "2": ("two",), "3": ("three",), "4": ("four",), "5": ("five",),
         "6": ("six",), "7": ("seven",), "8": ("eight",), "9": ("nine",)}
MAX_DIGITS = 8
MAX_SECONDS = 6.0  # 8 digits at the slowest rate, slowed 10 %, with the silences around them
BASE_VOICES = ("en", "en-US", "en-GB-x-rp", "en-GB-scotland", "en-029", "en-US-nyc", "en-GB-x-gbclan",
               "en-GB-x-gbcwmd")
HELD_OUT_BASE = "en-GB-scotland"
# variants that sound like another one (measured: klatt, klatt6 and caleb give identical audio; fast is the base voice)
SAME_AS_ANOTHER = ("klatt6", "caleb", "fast")
HELD_OUT_SEED = 2026_1207
EVAL_SEED = 1_000_033
BABBLE_SEED, BABBLE_CLIPS = 7_000_003, 256
RATES, PITCHES, WORD_GAPS = (110, 230), (20, 80), (0, 3)  # words per minute; 0-99; units of 10 ms
SNR_BUCKETS = ((0, 10), (10, 20), (20, 30))  # dB
TARGET_SNR_DB = 10  # the CER target holds from here up; below it is reported on its own


class SpeechSynthesisError(RuntimeError):
    """espeak-ng could not be loaded or could not speak with the voice asked for."""


@dataclass(frozen=True)
class Voice:
    base: str  # a file of espeak-ng-data/lang/gmw
    variant: str | None  # a file of espeak-ng-data/voices/!v, or None for the base voice itself
    rate: int
    pitch: int
    word_gap: int

    @property
    def name(self) -> str:
        return f"gmw/{self.base}" + (f"+{self.variant}" if self.variant else "")


@dataclass
class SpokenUtterance(Utterance):
    voice: str = ""
    seen_voice: bool = True  # False: a voice training never uses
    snr_db: float | None = None  # None: no noise added


class _VOICE(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
AUDIO_OUTPUT_SYNCHRONOUS, POS_CHARACTER = 2, 1
RATE, PITCH, WORD_GAP = 1, 3, 7  # espeak_PARAMETER


class Espeak:
    """The espeak-ng library, loaded once per process; espeak-ng keeps global state, so calls are serialised."""

    _lock = threading.Lock()
    _instance: "Espeak | None" = None

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError:
            raise SpeechSynthesisError("the spoken tasks need espeak-ng: pip install espeakng-loader") from None
        self.data = Path(espeakng_loader.get_data_path())
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(_VOICE)
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data).encode(), 0)
        if self.rate <= 0:
            raise SpeechSynthesisError(f"espeak-ng did not start (data at {self.data})")
        self._chunks: list[np.ndarray] = []

        def collect(wav, n, events):
            if n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = _SYNTH_CALLBACK(collect)  # held: espeak-ng calls it after this function returns
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib

    @classmethod
    def get(cls) -> "Espeak":
        with cls._lock:
            if cls._instance is None:
                cls._instance = Espeak()
            return cls._instance

    def variants(self) -> list[str]:
        return sorted(p.name for p in (self.data / "voices" / "!v").iterdir() if p.is_file())

    def speak(self, text: str, voice: Voice) -> np.ndarray:
        """`text` in `voice`: float64 samples at SAMPLE_RATE. A voice espeak-ng would quietly replace is refused."""
        with self._lock:
            self.lib.espeak_SetVoiceByName(voice.name.encode())
            got = self.lib.espeak_GetCurrentVoice().contents.identifier.decode()
            if got != voice.name:  # a misspelled variant falls back to the base voice without a word
                raise SpeechSynthesisError(f"espeak-ng has no voice {voice.name!r} (it offered {got!r})")
            for param, value in ((RATE, voice.rate), (PITCH, voice.pitch), (WORD_GAP, voice.word_gap)):
                self.lib.espeak_SetParameter(param, value, 0)
            self._chunks.clear()
            data = text.encode() + b"\0"
            self.lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, 0, None, None)
            self.lib.espeak_Synchronize()
            pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return resample(pcm.astype(np.float64) / 32768.0, self.rate, SAMPLE_RATE)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling with scipy's anti-aliasing filter, designed once per pair of rates."""
    from scipy.signal import resample_poly

    up, down = _ratio(rate_in, rate_out)
    return resample_poly(x, up, down, window=_resampling_filter(up, down))


def _ratio(rate_in: int, rate_out: int) -> tuple[int, int]:
    from math import gcd

    g = gcd(rate_in, rate_out)
    return rate_out // g, rate_in // g


@lru_cache(maxsize=4)
def _resampling_filter(up: int, down: int) -> np.ndarray:
    """The low-pass FIR filter resample_poly designs when given none (Kaiser, beta 5, 10 taps per phase)."""
    from scipy.signal import firwin

    half_len = 10 * max(up, down)
    return firwin(2 * half_len + 1, 1.0 / max(up, down), window=("kaiser", 5.0))


def voice_split(variants: list[str]) -> tuple[list[str], list[str]]:
    """(training variants, held-out variants): a fixed 80/20 split of the variants espeak-ng offers."""
    usable = [v for v in variants if v not in SAME_AS_ANOTHER]
    order = np.random.default_rng(HELD_OUT_SEED).permutation(len(usable))
    k = max(1, len(usable) // 5)
    held = sorted(usable[i] for i in order[:k])
    return sorted(set(usable) - set(held)), held


def draw_voice(rng: np.random.Generator, seen: bool, variants: list[str]) -> Voice:
    train, held = voice_split(variants)
    bases = [b for b in BASE_VOICES if b != HELD_OUT_BASE]
    if seen:
        base, variant = rng.choice(bases), rng.choice([None, *train])
    elif rng.random() < 0.5:  # the unheard accent, with any variant
        base, variant = HELD_OUT_BASE, rng.choice([None, *train, *held])
    else:  # an unheard variant, in any accent heard in training
        base, variant = rng.choice(bases), rng.choice(held)
    return Voice(str(base), None if variant is None else str(variant), int(rng.integers(*RATES, endpoint=True)),
                 int(rng.integers(*PITCHES, endpoint=True)), int(rng.integers(*WORD_GAPS, endpoint=True)))


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Played `factor` times as fast (pitch moves with it, as in Kaldi's speed perturbation)."""
    n = max(1, int(round(len(x) / factor)))
    return np.interp(np.arange(n) * factor, np.arange(len(x)), x)


def telephone(x: np.ndarray) -> np.ndarray:
    """Only 300-3400 Hz kept, as a telephone line does."""
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    return np.fft.irfft(spectrum, len(x))


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))  # power falls as 1/f
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def with_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`x` plus `noise` scaled so that power(x) / power(noise) is `snr_db`."""
    px, pn = np.mean(x**2) + 1e-12, np.mean(noise**2) + 1e-12
    return x + noise * np.sqrt(px / pn / 10 ** (snr_db / 10))


def spoken_words(digits: str, rng: np.random.Generator) -> str:
    return " ".join(str(rng.choice(WORDS[d])) for d in digits)


def synthesize(rng: np.random.Generator, digits: str | None = None, seen: bool = True,
               noisy: bool | None = None) -> SpokenUtterance:
    """One utterance of `digits` (default: 1 to MAX_DIGITS random digits) in a voice drawn from the seen or
    the held-out voices, augmented; `noisy` forces noise on or off (default: 80 % of utterances).

    Every choice is drawn before any audio exists: espeak-ng's output varies by a few samples from call
    to call (its own random state), and this keeps the text, voice, SNR and the rest of `rng`'s stream
    independent of those lengths."""
    speaker = Espeak.get()
    if digits is None:
        digits = "".join(rng.choice(list(ALPHABET), size=rng.integers(1, MAX_DIGITS + 1)))
    voice = draw_voice(rng, seen, speaker.variants())
    words = spoken_words(digits, rng)
    augment = Augmentation.draw(rng, noisy)
    x = augment.apply(speaker.speak(words, voice), int(MAX_SECONDS * SAMPLE_RATE))
    return SpokenUtterance(x, digits, voice.name, seen, augment.snr)


@dataclass(frozen=True)
class Augmentation:
    """What one clip goes through, drawn before any audio exists: speed, silence around it, reverberation,
    a telephone band, noise at an SNR (None: none), gain."""

    factor: float
    before: int
    after: int
    reverb: bool
    phone: bool
    gain: float
    snr: float | None
    noise_kind: int  # white, pink or babble
    seed: int

    @classmethod
    def draw(cls, rng: np.random.Generator, noisy: bool | None = None) -> "Augmentation":
        factor = rng.uniform(0.9, 1.1)
        before, after = (int(rng.uniform(0.05, 0.3) * SAMPLE_RATE) for _ in range(2))
        reverb, phone, gain = rng.random() < 0.5, rng.random() < 0.2, rng.uniform(0.1, 0.9)
        snr = float(rng.uniform(0, 30)) if (noisy if noisy is not None else rng.random() < 0.8) else None
        return cls(factor, before, after, reverb, phone, gain, snr, int(rng.integers(3)), int(rng.integers(2**63)))

    def apply(self, speech: np.ndarray, max_samples: int) -> np.ndarray:
        """float32 samples: `speech` augmented, at most `max_samples` long; no speech at all gives the noise alone."""
        audio_rng = np.random.default_rng(self.seed)
        x = np.concatenate([np.zeros(self.before), speed(speech, self.factor) if len(speech) else speech,
                            np.zeros(self.after)])[:max_samples]
        if self.reverb:
            x = reverberate(x, audio_rng)
        if self.phone:
            x = telephone(x)
        if self.snr is not None or not np.any(x):
            noise = (lambda: audio_rng.standard_normal(len(x)), lambda: pink(len(x), audio_rng),
                     lambda: babble(len(x), audio_rng))[self.noise_kind]()
            x = with_noise(x, noise, self.snr) if np.any(x) else noise
        x *= self.gain / (np.abs(x).max() + 1e-9)
        return x.astype(np.float32)


def babble(n: int, rng: np.random.Generator) -> np.ndarray:
    """3 to 5 other voices saying other digits at once, each from a random point of a clip of the babble
    pool, cut or repeated to `n` samples."""
    pool = _babble_pool()
    out = np.zeros(n)
    for i in rng.choice(len(pool), size=int(rng.integers(3, 6)), replace=False):
        talk = np.roll(pool[i], int(rng.integers(len(pool[i]))))
        out += np.resize(talk, n)
    return out


@lru_cache(maxsize=1)
def _babble_pool() -> tuple[np.ndarray, ...]:
    """BABBLE_CLIPS clips of six digits in heard voices, spoken once per process (fixed by BABBLE_SEED):
    babble mixes a few of them instead of speaking 3 to 5 new sentences for every noisy clip."""
    speaker, rng = Espeak.get(), np.random.default_rng(BABBLE_SEED)
    variants = speaker.variants()
    clips = []
    while len(clips) < BABBLE_CLIPS:
        talk = speaker.speak(spoken_words("".join(rng.choice(list(ALPHABET), size=6)), rng),
                             draw_voice(rng, True, variants))
        if len(talk):
            clips.append(talk)
    return tuple(clips)


def held_out(n: int = 300) -> list[SpokenUtterance]:
    """The evaluation set: `n` utterances from seeds training never uses (one per utterance), half in voices
    training never hears; noise at 0-30 dB SNR (uniform) on nine in ten, the tenth clean."""
    return [synthesize(np.random.default_rng([EVAL_SEED, i]), seen=i % 2 == 0, noisy=i % 10 != 9) for i in range(n)]


def snr_bucket(u: SpokenUtterance) -> str:
    if u.snr_db is None:
        return "clean"
    lo, hi = next((lo, hi) for lo, hi in SNR_BUCKETS if u.snr_db < hi or hi == SNR_BUCKETS[-1][1])
    return f"{lo}-{hi} dB"


def report_groups(u: SpokenUtterance) -> list[str]:
    """The groups an evaluation reports this utterance under: heard or unheard voice, its SNR bucket, and
    "10-30 dB" (the range the CER target is set for) where it falls there."""
    groups = ["heard voices" if u.seen_voice else "unheard voices", snr_bucket(u)]
    if u.snr_db is not None and u.snr_db >= TARGET_SNR_DB:
        groups.append(f"{TARGET_SNR_DB}-{SNR_BUCKETS[-1][1]} dB")
    return groups
