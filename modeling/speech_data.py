"""The built-in speech task `audio-digits` lives in edgeformer.tasks.speech (torch-free); this path stays for its readers."""

from edgeformer.tasks.speech import (ALPHABET, COLUMNS, EVAL_SEED, KEYS, MAX_DIGITS, MAX_SECONDS, ROWS,  # noqa: F401
                                     SAMPLE_RATE, Utterance, add_noise, held_out, reverberate, synthesize, tone_pair,
                                     utterances)
