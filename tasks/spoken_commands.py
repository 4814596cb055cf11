"""Spoken commands: keyword spotting in the style of the Speech Commands benchmark (Warden 2018), spoken
by espeak-ng in the voices of tasks/spoken.py, with its held-out voices and augmentation; no PyTorch.

    labels     yes no up down left right on off stop go   (the ten keywords)
               unknown   any other word: the ten digits and the benchmark's other words
               silence   no word: noise alone (white, pink or babble), or near silence

Each clip is one word placed at random in a second of audio (longer words keep their length, up to
MAX_SECONDS), augmented as the spoken digits are. Training draws the 12 labels equally often; the
held-out set is fixed by seed, half of it in voices training never hears, noise at 0-30 dB SNR on nine
clips in ten.
"""

from __future__ import annotations

import numpy as np

from .speech import SAMPLE_RATE
from .spoken import Augmentation, Espeak, SpokenUtterance, draw_voice

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "unknown", "silence"
LABELS = KEYWORDS + (UNKNOWN, SILENCE)
OTHER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "bed", "bird", "cat",
               "dog", "happy", "house", "marvin", "sheila", "tree", "wow", "learn", "follow", "forward", "backward",
               "visual")
CLIP_SECONDS, MAX_SECONDS = 1.0, 1.5
EVAL_SEED = 2_000_029


def synthesize(rng: np.random.Generator, label: str | None = None, seen: bool = True,
               noisy: bool | None = None) -> SpokenUtterance:
    """One clip of `label` (default: one of the 12, equally often) in a seen or held-out voice, augmented."""
    speaker = Espeak.get()
    label = label or str(rng.choice(LABELS))
    word = str(rng.choice(OTHER_WORDS)) if label == UNKNOWN else (None if label == SILENCE else label)
    voice = draw_voice(rng, seen, speaker.variants())
    augment = Augmentation.draw(rng, noisy)
    speech = speaker.speak(word, voice) if word else np.zeros(0)
    x = augment.apply(speech, int(MAX_SECONDS * SAMPLE_RATE))
    clip = int(CLIP_SECONDS * SAMPLE_RATE)
    if len(x) < clip:  # the word at a random place in a second of audio, the rest the clip's own noise floor
        start = int(np.random.default_rng(augment.seed).integers(clip - len(x) + 1))
        x = np.concatenate([np.zeros(start, np.float32), x, np.zeros(clip - len(x) - start, np.float32)])
    return SpokenUtterance(x, label, voice.name, seen, augment.snr if word else None)


def held_out(n: int = 300) -> list[SpokenUtterance]:
    """The evaluation set: `n` clips from seeds training never uses, the labels in turn, half in voices
    training never hears, noise on nine in ten."""
    return [synthesize(np.random.default_rng([EVAL_SEED, i]), LABELS[i % len(LABELS)], seen=(i // len(LABELS)) % 2 == 0,
                       noisy=i % 10 != 9) for i in range(n)]
