"""The built-in speech task `audio-digits`: synthesised touch-tone digit strings, not human speech; no PyTorch.

No speech data set or speech model ships in a package this project installs, so the task makes
its audio in numpy: a string of 1 to 6 digits, each "spoken" as a DTMF-like pair of tones (the
telephone keypad's row and column frequencies, 697-941 Hz and 1209-1477 Hz) with
- a random duration per digit (60-180 ms) and random silences between digits (30-150 ms) and
  around the string (20-300 ms), so the model must find where symbols start and end;
- pitch jitter (each tone off its nominal frequency by up to 3%), random level per digit, a
  random phase, and 5 ms fades (no clicks to key on);
- reverberation (an exponentially decaying noise impulse response, RT60 50-300 ms) and
  background noise (white and low-passed, 5-30 dB SNR).
Repeated digits ("55") are separated by a silence, as a CTC model needs to tell them apart.

What it is: a structured audio language in which the same symbol sounds differently every time,
with the timing, noise and room problems a recogniser meets. What it is not: speech. A character
error rate on it says the pipeline (features in the graph, Conformer, CTC, quantization, runtime)
learns and keeps what it learnt; it says nothing about accuracy on human voices.

Training draws fresh utterances every batch from a seeded generator; the held-out set is a fixed
set drawn from another seed, never seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000
ALPHABET = "0123456789"
ROWS = (697.0, 770.0, 852.0, 941.0)
COLUMNS = (1209.0, 1336.0, 1477.0)
# The telephone keypad: 1 2 3 / 4 5 6 / 7 8 9 / * 0 #
KEYS = {"1": (0, 0), "2": (0, 1), "3": (0, 2), "4": (1, 0), "5": (1, 1), "6": (1, 2),
        "7": (2, 0), "8": (2, 1), "9": (2, 2), "0": (3, 1)}
MAX_DIGITS = 6
EVAL_SEED = 1_000_003
# The longest utterance: 6 digits of 180 ms, 5 gaps of 150 ms, 2 x 300 ms around, and the reverb tail cut at the end.
MAX_SECONDS = (MAX_DIGITS * 0.18 + (MAX_DIGITS - 1) * 0.15 + 0.6)


@dataclass
class Utterance:
    waveform: np.ndarray  # (N,) float32 in [-1, 1]
    text: str


def tone_pair(digit: str, n: int, rng: np.random.Generator) -> np.ndarray:
    r, c = KEYS[digit]
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    for f, level in ((ROWS[r], 1.0), (COLUMNS[c], rng.uniform(0.6, 1.2))):
        f *= 1.0 + rng.uniform(-0.03, 0.03)
        out += level * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    fade = min(80, n // 2)  # 5 ms
    ramp = np.linspace(0.0, 1.0, fade)
    out[:fade] *= ramp
    out[n - fade:] *= ramp[::-1]
    return out


def reverberate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rt60 = rng.uniform(0.05, 0.3)
    n = int(rt60 * SAMPLE_RATE)
    decay = np.exp(-6.9 * np.arange(n) / n)  # -60 dB at rt60
    ir = rng.standard_normal(n) * decay * rng.uniform(0.05, 0.3)
    ir[0] = 1.0
    from scipy.signal import oaconvolve  # overlap-add: 40x faster than direct convolution at rt60 0.3 s

    return oaconvolve(x, ir)[: len(x)]


def add_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(len(x))
    if rng.random() < 0.5:  # low-passed (a rumble) instead of white
        k = rng.integers(4, 32)
        noise = np.convolve(noise, np.ones(k) / np.sqrt(k), mode="same")
    signal = np.sqrt(np.mean(x**2)) + 1e-9
    snr_db = rng.uniform(5, 30)
    return x + noise * signal / (np.sqrt(np.mean(noise**2)) + 1e-9) / 10 ** (snr_db / 20)


def synthesize(rng: np.random.Generator, digits: str | None = None) -> Utterance:
    """One utterance: `digits` (default: 1 to 6 random digits) as tone pairs, gaps, reverb and noise."""
    if digits is None:
        digits = "".join(rng.choice(list(ALPHABET), size=rng.integers(1, MAX_DIGITS + 1)))
    sec = lambda lo, hi: int(rng.uniform(lo, hi) * SAMPLE_RATE)  # noqa: E731
    parts = [np.zeros(sec(0.02, 0.3))]
    for i, d in enumerate(digits):
        if i:
            parts.append(np.zeros(sec(0.03, 0.15)))
        parts.append(tone_pair(d, sec(0.06, 0.18), rng) * rng.uniform(0.3, 1.0))
    parts.append(np.zeros(sec(0.02, 0.3)))
    x = add_noise(reverberate(np.concatenate(parts), rng), rng)
    x *= rng.uniform(0.1, 0.9) / (np.abs(x).max() + 1e-9)
    return Utterance(x.astype(np.float32), digits)


def utterances(n: int, seed: int) -> list[Utterance]:
    rng = np.random.default_rng(seed)
    return [synthesize(rng) for _ in range(n)]


def held_out(n: int = 300) -> list[Utterance]:
    """The held-out set: `n` utterances from a seed training never uses."""
    return utterances(n, EVAL_SEED)
