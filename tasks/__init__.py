"""edgeformer.tasks: the built-in data that training, quantization and the CLI share, without PyTorch.

- text.py: the text tasks (stdlib-topics, pydoc-lm, reverse), the user's text files, and the
  paragraphs of Python's language reference that the quantizer evaluates and calibrates on;
- images.py: the digits images (scikit-learn's 8x8 scans, read when asked for);
- speech.py: the audio-digits clips and their texts, synthesised in numpy;
- spoken.py: digit strings spoken by espeak-ng in many voices, some held out for evaluation.

Imports numpy and the runtime only; scikit-learn is imported by `digits()` alone, scipy and
espeak-ng (through ctypes) by the spoken clips.
"""

from .images import IMAGE_TASKS, ImageData, digits
from .speech import Utterance, held_out, synthesize, utterances
from .text import (DataError, PairData, pydoc_corpus, python_paragraphs, reverse_words)

__all__ = ["DataError", "IMAGE_TASKS", "ImageData", "PairData", "Utterance", "digits", "held_out", "pydoc_corpus",
           "python_paragraphs", "reverse_words", "synthesize", "utterances"]
