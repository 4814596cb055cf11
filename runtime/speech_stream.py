"""Streaming speech, without PyTorch: audio in pieces of any size in, the transcript so far out.

A streaming-speech bundle (`edgeformer export --streaming`; its manifest's `model.stream` record) is
one step of a Conformer: a window of audio and the caches in, that chunk's CTC logits and the next
caches out. `AudioStream` drives it: it buffers the samples it is fed, runs a step whenever a whole
window is there (windows overlap, so a frame that straddles two pieces is computed once, exactly),
and carries the caches from step to step. `finish` runs the last, partial window, zero-padded, and
says how many of its frames are speech: the logits then equal those of the whole recording given to
the model at once with the same chunked attention (export/speech_stream.py checks that at export).

Pieces may be of any size (a microphone's buffers rarely match the chunk); each is checked as
`transcribe` checks a recording, so NaN, integer samples, two channels or samples outside [-1, 1]
are refused in one line, and nothing is fed after `finish`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping

import numpy as np

from .bundle import STREAMING_SPEECH
from .errors import EdgeformerError, InputError
from .speech import BLANK, SAMPLE_RATE, check_recordings, check_waveform, ids_to_text

if TYPE_CHECKING:
    from .facade import BundleModel

NO_LIMIT = np.iinfo(np.int64).max


def output_frames(samples: int, window_samples: int, hop_samples: int, chunk_frames: int) -> int:
    """Logit frames of a recording of `samples`, from a stream record's geometry alone (any runtime can count
    them without knowing the model): a frame is complete once its hop_samples / chunk_frames samples and the
    window_samples - hop_samples after them (what the front end and the subsampling read past it) are there."""
    reach, per_frame = window_samples - hop_samples, hop_samples // chunk_frames
    return max(0, (samples - reach) // per_frame)


def shortest(record) -> int:
    """The fewest samples that give a stream record's model one frame."""
    return record.window_samples - record.hop_samples + record.hop_samples // record.chunk_frames


def stream_record(model: "BundleModel"):
    if model.manifest.kind != STREAMING_SPEECH:
        raise EdgeformerError(f"bundle {model.bundle.path} does not stream (its kind: {model.manifest.kind}); "
                              "export the Conformer with --streaming")
    return model.manifest.model.stream


class AudioStream:
    """One stream through a streaming-speech bundle: `feed` pieces, then `finish`; each returns the
    (frames, vocab) logits of the frames it completed. `run` is the step (the bundle itself, or any
    feeds -> named outputs callable over its graph: the quantizer's candidates)."""

    def __init__(self, model: "BundleModel", run: Callable[[dict], Mapping[str, np.ndarray]] | None = None):
        self.model, self.record, self.run = model, stream_record(model), run or model
        specs = {s.name: s for s in model.manifest.inputs}
        self.state = {name: np.zeros([1 if d == "batch" else d for d in specs[name].shape], specs[name].dtype)
                      for name in self.record.state}
        self.buffer = np.zeros(0, np.float32)
        self.samples = self.frames = self.pieces = 0
        self.finished = False

    def feed(self, piece) -> np.ndarray:
        if self.finished:
            raise InputError("this stream is finished; start another for more audio")
        piece = check_waveform(piece, self.pieces, 1, NO_LIMIT)
        self.pieces += 1
        self.samples += len(piece)
        self.buffer = np.concatenate([self.buffer, piece])
        out = []
        while len(self.buffer) >= self.record.window_samples:
            out.append(self.step(self.buffer[: self.record.window_samples], self.record.chunk_frames))
            self.buffer = self.buffer[self.record.hop_samples:]
        return self.logits(out)

    def finish(self) -> np.ndarray:
        """The frames left in the last, partial window (none when the stream ended on a chunk's edge)."""
        if self.finished:
            raise InputError("this stream is finished already")
        self.finished = True
        r = self.record
        left = output_frames(self.samples, r.window_samples, r.hop_samples, r.chunk_frames) - self.frames
        if left <= 0:
            return self.logits([])
        window = np.zeros(self.record.window_samples, np.float32)
        window[: len(self.buffer)] = self.buffer
        return self.logits([self.step(window, left)])

    def step(self, window: np.ndarray, valid: int) -> np.ndarray:
        r = self.record
        out = self.run({"audio": window[None], r.valid_frames: np.array([valid], np.int64), **self.state})
        self.state = {name: out[nxt] for name, nxt in zip(r.state, r.next_state)}
        self.frames += valid
        return out["logits"][0, :valid]

    def logits(self, parts: list[np.ndarray]) -> np.ndarray:
        vocab = int(self.model.manifest.config["vocab_size"])
        return np.concatenate(parts) if parts else np.zeros((0, vocab), np.float32)


class GreedyText:
    """Greedy CTC over logits that come chunk by chunk: a repeat across a chunk boundary is merged too."""

    def __init__(self, alphabet: str):
        self.alphabet, self.last, self.ids = alphabet, BLANK, []

    def add(self, logits: np.ndarray) -> str:
        for best in logits.argmax(-1) if len(logits) else ():
            if best != self.last and best != BLANK:
                self.ids.append(int(best))
            self.last = best
        return ids_to_text(self.ids, self.alphabet)


def transcribe_stream(model: "BundleModel", pieces: Iterable, sample_rate: int = SAMPLE_RATE) -> Iterator[str]:
    """The transcript so far after each piece of 16 kHz mono float32 audio, then the final one."""
    stream_record(model)
    if isinstance(sample_rate, bool) or sample_rate != SAMPLE_RATE:
        raise InputError(f"sample rate {sample_rate!r} Hz; this model reads {SAMPLE_RATE} Hz audio (resample first)")
    if isinstance(pieces, (np.ndarray, str, bytes)) or not hasattr(pieces, "__iter__"):
        raise InputError(f"pieces of type {type(pieces).__name__}; expected an iterable of 1-D sample arrays "
                         "(a generator reading a microphone, or a list)")
    return _texts(AudioStream(model), GreedyText(model.manifest.config["alphabet"]), pieces)


def _texts(stream: AudioStream, text: GreedyText, pieces: Iterable) -> Iterator[str]:
    """Checked before the first piece is read (transcribe_stream), so a wrong bundle fails at the call."""
    for piece in pieces:
        yield text.add(stream.feed(piece))
    yield text.add(stream.finish())


def stream_logits(model: "BundleModel", waveform: np.ndarray, piece: int,
                  run: Callable[[dict], Mapping[str, np.ndarray]] | None = None) -> np.ndarray:
    """(frames, vocab): one recording fed `piece` samples at a time (the export's parity gate, the quantizer's
    evaluation with `run` as the step)."""
    stream = AudioStream(model, run)
    parts = [stream.feed(waveform[i : i + piece]) for i in range(0, len(waveform), piece)]
    return np.concatenate(parts + [stream.finish()])


def transcribe_whole(model: "BundleModel", waveforms, sample_rate: int = SAMPLE_RATE) -> list[str]:
    """`transcribe` for a streaming bundle: each recording through a stream of its own, in one piece. No
    recording is too long for a stream; one too short for a single frame is refused."""
    stream_record(model)
    waves = check_recordings(waveforms, sample_rate, shortest(model.manifest.model.stream), NO_LIMIT)
    alphabet = model.manifest.config["alphabet"]
    return [GreedyText(alphabet).add(stream_logits(model, w, len(w))) for w in waves]
