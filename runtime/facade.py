"""What every loaded bundle offers, whatever runs its graph: the `BundleModel` protocol and its task calls.

`runtime.Model` (ONNX Runtime) and `runtime.tensorrt.EngineModel` (TensorRT) both implement
`BundleModel`: a dict of arrays in, a dict of arrays out (`__call__`), the raw graph call without
checks (`run`, for timing and for code that compares graphs), and the task calls below. The task
calls are written once, here, against that protocol; which of them a bundle answers is its kind's
(runtime/kinds.py), and a call a bundle cannot answer is refused in one line by the task's module.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from .bundle import STREAMING_SPEECH, Bundle, Manifest, TensorSpec


@runtime_checkable
class BundleModel(Protocol):
    """A loaded bundle, on any engine."""

    bundle: Bundle
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    notes: list[str]

    @property
    def manifest(self) -> Manifest: ...

    @property
    def providers(self) -> list[str]: ...

    @property
    def max_batch(self) -> int: ...

    def validate(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]: ...

    def __call__(self, inputs: Mapping[str, Any] | None = None, /, **named: Any) -> dict[str, np.ndarray]: ...

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


class TaskCalls:
    """The task calls of a BundleModel: text, images, speech and generation, each in its own module."""

    @property
    def tokenizer(self):
        """The bundle's TextTokenizer (needs the optional `tokenizers` package), loaded on first use."""
        with self.__dict__.setdefault("_tokenizer_lock", threading.Lock()):  # one per model, however many threads ask
            if self.__dict__.get("_tokenizer") is None:
                from .text import tokenizer_of

                self._tokenizer = tokenizer_of(self)
            return self._tokenizer

    def embed(self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True, truncation: bool = True,
              **unknown: Any) -> np.ndarray:
        """(N, d) L2-normalised mean-pooled sentence embeddings of `texts` (see runtime.text)."""
        from .text import embed, refuse_unknown

        refuse_unknown("embed", unknown, ("texts", "batch_size", "normalize", "truncation"))
        return embed(self, texts, batch_size, normalize, truncation)

    def classify(self, texts: Sequence[str], batch_size: int = 32, truncation: bool = True, **unknown: Any):
        """Labels and probabilities for `texts` (a runtime.text.Classification)."""
        from .text import classify, refuse_unknown

        refuse_unknown("classify", unknown, ("texts", "batch_size", "truncation"))
        return classify(self, texts, batch_size, truncation)

    def classify_images(self, images, layout: str = "HWC", resize: bool = False, batch_size: int = 64):
        """Labels and probabilities for uint8 or [0, 1] float images, HWC or CHW (see runtime.images)."""
        from .images import classify_images

        return classify_images(self, images, layout, resize, batch_size)

    def transcribe(self, waveforms, sample_rate: int = 16000, batch_size: int = 16) -> list[str]:
        """Texts for mono float32 waveforms by greedy CTC, with a speech bundle (see runtime.speech); a
        streaming bundle takes each recording through a stream (runtime.speech_stream)."""
        if self.manifest.kind == STREAMING_SPEECH:
            from .speech_stream import transcribe_whole

            return transcribe_whole(self, waveforms, sample_rate)
        from .speech import transcribe

        return transcribe(self, waveforms, sample_rate, batch_size)

    def classify_audio(self, waveforms, sample_rate: int = 16000, batch_size: int = 16):
        """Labels and probabilities for mono float32 clips, with a keyword spotter (see runtime.speech)."""
        from .speech import classify_audio

        return classify_audio(self, waveforms, sample_rate, batch_size)

    def transcribe_stream(self, pieces, sample_rate: int = 16000):
        """The transcript so far after each piece of audio, then the final one, with a streaming speech
        bundle (`edgeformer export --streaming`; see runtime.speech_stream)."""
        from .speech_stream import transcribe_stream

        return transcribe_stream(self, pieces, sample_rate)

    def generate(self, prompt, **settings):
        """Generate tokens (and text) with a decoder bundle exported with --kv-cache (see runtime.generate)."""
        from .generate import generate

        return generate(self, prompt, **settings)

    def stream(self, prompt, **settings):
        """Like `generate`, as an iterator of steps that yields each token as it comes (see runtime.generate)."""
        from .generate import stream

        return stream(self, prompt, **settings)

    def chat(self, messages, **settings):
        """The reply to a conversation, rendered with the model's own chat template and stopped at its
        end-of-turn tokens; settings as for `generate`, plus `template` (see runtime.chat)."""
        from .chat import chat

        return chat(self, messages, **settings)

    def chat_stream(self, messages, **settings):
        """Like `chat`, as an iterator of steps (see runtime.chat)."""
        from .chat import chat_stream

        return chat_stream(self, messages, **settings)
