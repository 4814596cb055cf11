"""The built-in speech tasks by name: what `edgeformer train --arch conformer --task NAME` trains on, what
distillation and quantization measure a speech model on (its checkpoint and bundle record the task). No PyTorch.

    audio-digits     touch-tone digit strings made in numpy (tasks/speech.py): the fast fixture
    spoken-digits    digit strings spoken by espeak-ng, voices held out for evaluation (tasks/spoken.py)
    spoken-commands  one word a clip, 12 labels: keyword spotting (tasks/spoken_commands.py)

A task either transcribes (`alphabet`: CTC symbols) or labels clips (`labels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import speech, spoken, spoken_commands
from .speech import Utterance
from .text import DataError

DEFAULT_SPEECH_TASK = "audio-digits"  # what every speech checkpoint made before tasks were recorded trained on


@dataclass(frozen=True)
class SpeechTask:
    name: str
    alphabet: str | None  # the CTC symbols (id 0 is the blank); None: the task labels clips
    max_seconds: float  # the longest utterance the task makes
    synthesize: Callable[[np.random.Generator], Utterance]  # one fresh training utterance
    held_out: Callable[[int], list[Utterance]]  # the first n utterances of the fixed evaluation set
    labels: tuple[str, ...] | None = None  # a clip's text is one of these

    def utterances(self, n: int, seed: int) -> list[Utterance]:
        rng = np.random.default_rng(seed)
        return [self.synthesize(rng) for _ in range(n)]


SPEECH_TASKS = {task.name: task for task in (
    SpeechTask("audio-digits", speech.ALPHABET, speech.MAX_SECONDS, speech.synthesize, speech.held_out),
    SpeechTask("spoken-digits", spoken.ALPHABET, spoken.MAX_SECONDS, spoken.synthesize, spoken.held_out),
    SpeechTask("spoken-commands", None, spoken_commands.MAX_SECONDS, spoken_commands.synthesize,
               spoken_commands.held_out, spoken_commands.LABELS),
)}


def speech_task(name: str | None) -> SpeechTask:
    if (name or DEFAULT_SPEECH_TASK) not in SPEECH_TASKS:
        raise DataError(f"unknown speech task {name!r}; expected one of: {', '.join(SPEECH_TASKS)}")
    return SPEECH_TASKS[name or DEFAULT_SPEECH_TASK]
