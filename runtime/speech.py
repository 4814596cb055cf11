"""Speech into a Conformer bundle, without PyTorch: `Model.transcribe`, greedy CTC decoding, error rates.

A speech bundle takes raw 16 kHz mono float32 waveforms, right-padded into (batch, samples), and
their lengths in samples; the log-mel features are computed inside the graph. It returns CTC
logits (batch, frames, vocabulary) and the number of valid frames per row. Id 0 is the CTC blank;
id i > 0 is the manifest's alphabet[i - 1].

`transcribe` takes one 1-D array or a list or tuple of them; generators and other one-shot iterators
are refused, as for texts. Every recording is checked first and refused in one line: a sample rate
other than the model's, more than one channel, integer samples, NaN or infinite samples, samples
outside [-1, 1], fewer samples than the model's shortest input or more than its longest. WAV files
are read by runtime/wav.py (`read_wav`, re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .bundle import AUDIO
from .errors import EdgeformerError, InputError
from .postprocess import softmax
from .wav import read_wav, write_wav  # noqa: F401  (re-exported: the CLI and tests read and write WAV files here)

if TYPE_CHECKING:
    from .facade import BundleModel

SAMPLE_RATE = 16000
BLANK = 0


def ctc_greedy(logits: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    """(B, T, V) logits and (B,) valid frames -> token ids per row: best id per frame, repeats merged, blanks dropped."""
    out = []
    for row, n in zip(np.asarray(logits).argmax(-1), np.asarray(lengths)):
        best = row[: int(n)]
        keep = np.ones(len(best), dtype=bool)
        keep[1:] = best[1:] != best[:-1]
        out.append([int(t) for t in best[keep] if t != BLANK])
    return out


def ids_to_text(ids: Sequence[int], alphabet: str) -> str:
    return "".join(alphabet[i - 1] for i in ids)


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions each 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def character_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Edits needed to turn every hypothesis into its reference, over all reference characters (0 = perfect;
    a model that outputs nothing scores 1.0)."""
    edits = sum(edit_distance(h, r) for h, r in zip(hypotheses, references))
    return edits / max(1, sum(len(r) for r in references))


def speech_limits(model: "BundleModel", task: str = "speech-recognition") -> tuple[int, int, str]:
    """(fewest samples, most samples, alphabet) of a speech bundle of `task`; refuses any other bundle."""
    if model.manifest.modality != AUDIO or model.manifest.model.task != task:
        call = {"speech-recognition": "transcribe", "audio-classification": "classify_audio"}
        other = call.get(model.manifest.model.task)
        raise EdgeformerError(f"bundle {model.bundle.path} is not a {task.replace('-', ' ')} model (its task: "
                              f"{model.manifest.model.task}{f'; use {other}' if other else ''})")
    spec = {s.name: s for s in model.inputs}["lengths"]
    return int(spec.min), int(spec.max), model.manifest.config["alphabet"]


def check_waveform(w, i: int, lo: int, hi: int) -> np.ndarray:
    """One recording -> float32 (N,), or a one-line InputError saying what is wrong with it."""
    if isinstance(w, (str, bytes, dict, set)) or w is None or hasattr(w, "__next__"):
        raise InputError(f"waveform {i} is of type {type(w).__name__}; expected a 1-D array of float samples in [-1, 1]")
    try:
        w = np.asarray(w)
    except (ValueError, TypeError, OverflowError):  # ragged nested lists, objects numpy cannot hold
        raise InputError(f"waveform {i} has rows of different lengths or values numpy cannot hold; expected a 1-D "
                         "array of float samples in [-1, 1]") from None
    if w.ndim != 1:
        raise InputError(f"waveform {i} has shape {w.shape}; expected mono audio, one 1-D array of samples per "
                         "recording (mix multi-channel audio down first; pass a list for several recordings)")
    if w.dtype.kind != "f":
        raise InputError(f"waveform {i} has dtype {w.dtype}; expected float samples in [-1, 1] "
                         "(int16 PCM: divide by 32768)")
    if w.size == 0:
        raise InputError(f"waveform {i} is empty; expected at least {lo} samples ({lo / SAMPLE_RATE * 1000:.0f} ms)")
    if not np.isfinite(w).all():
        bad = int(np.flatnonzero(~np.isfinite(w))[0])
        raise InputError(f"waveform {i} has a NaN or infinite sample at index {bad}; expected finite samples in [-1, 1]")
    peak = int(np.argmax(np.abs(w)))
    if abs(float(w[peak])) > 1.0:
        raise InputError(f"waveform {i} has sample {float(w[peak]):.6g} at index {peak}; expected samples in [-1, 1] "
                         "(scale integer PCM first: int16 by 1/32768)")
    if w.size < lo:
        raise InputError(f"waveform {i} has {w.size} samples ({w.size / SAMPLE_RATE * 1000:.0f} ms); "
                         f"this model needs at least {lo} ({lo / SAMPLE_RATE * 1000:.0f} ms)")
    if w.size > hi:
        raise InputError(f"waveform {i} has {w.size} samples ({w.size / SAMPLE_RATE:.2f} s); "
                         f"this model accepts at most {hi} ({hi / SAMPLE_RATE:.2f} s): split the recording")
    return w.astype(np.float32)


def pad_waveforms(waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Recordings -> (B, N) float32 right-padded with zeros, and (B,) int64 lengths."""
    lengths = np.array([len(w) for w in waves], dtype=np.int64)
    out = np.zeros((len(waves), int(lengths.max())), dtype=np.float32)
    for i, w in enumerate(waves):
        out[i, : len(w)] = w
    return out, lengths


def transcribe(model: "BundleModel", waveforms, sample_rate: int = SAMPLE_RATE, batch_size: int = 16) -> list[str]:
    """Texts for 16 kHz mono float32 `waveforms` (one 1-D array, or a sequence of them), by greedy CTC."""
    outs = run_recordings(model, "speech-recognition", waveforms, sample_rate, batch_size)
    alphabet = model.manifest.config["alphabet"]
    return [ids_to_text(ids, alphabet) for out in outs for ids in ctc_greedy(out["logits"], out["logit_lengths"])]


def run_recordings(model: "BundleModel", task: str, waveforms, sample_rate, batch_size) -> list[dict[str, np.ndarray]]:
    """`task`'s bundle on checked recordings, `batch_size` at a time, right-padded: its outputs, batch by batch.
    Everything is checked before the first batch runs."""
    lo, hi, _ = speech_limits(model, task)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r}; expected a positive integer")
    waves = check_recordings(waveforms, sample_rate, lo, hi)
    outs = []
    for start in range(0, len(waves), batch_size):
        batch, lengths = pad_waveforms(waves[start : start + batch_size])
        outs.append(model({"waveforms": batch, "lengths": lengths}))
    return outs


def check_recordings(waveforms, sample_rate, lo: int, hi: int) -> list[np.ndarray]:
    """One recording or a list or tuple of them, at 16 kHz -> float32 1-D arrays, or a one-line InputError."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)):
        raise InputError(f"sample_rate of type {type(sample_rate).__name__}; expected {SAMPLE_RATE} (Hz)")
    if sample_rate != SAMPLE_RATE:
        raise InputError(f"sample rate {sample_rate} Hz; this model reads {SAMPLE_RATE} Hz audio (resample first)")
    if isinstance(waveforms, np.ndarray):  # one recording (a batch is a list: recordings differ in length)
        waveforms = [waveforms]
    if not isinstance(waveforms, (list, tuple)):
        one_shot = " (read once: pass a list)" if hasattr(waveforms, "__next__") else ""
        raise InputError(f"waveforms of type {type(waveforms).__name__}{one_shot}; expected one 1-D array of samples "
                         "or a list of them")
    waves = [check_waveform(w, i, lo, hi) for i, w in enumerate(waveforms)]
    if not waves:
        raise InputError("no waveforms given; expected at least one recording")
    return waves


@dataclass
class AudioClassification:
    labels: list[str]  # the most probable label of each clip
    probabilities: np.ndarray  # (N, num_labels)
    label_names: list[str]


def classify_audio(model: "BundleModel", waveforms, sample_rate: int = SAMPLE_RATE,
                   batch_size: int = 16) -> AudioClassification:
    """Labels and probabilities for 16 kHz mono float32 clips, with a keyword spotter (a Conformer that
    labels clips); the clips are checked as `transcribe` checks recordings."""
    outs = run_recordings(model, "audio-classification", waveforms, sample_rate, batch_size)
    p = softmax(np.concatenate([out["logits"] for out in outs]).astype(np.float64))
    names = list(model.manifest.model.labels or [])
    return AudioClassification([names[k] for k in p.argmax(-1)], p, names)
