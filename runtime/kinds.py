"""Every kind of bundle the runtime knows, in one table: which manifests it takes, the task calls it
answers, and the inputs its test vectors are built from (runtime/examples.py).

    kind            takes                                  reads        task calls (besides the graph call)
    seq2seq         manifest kind seq2seq                  text or ids  generate, stream
    cached-decoder  manifest kind cached-decoder           text or ids  generate, stream
    streaming-      manifest kind streaming-speech         audio        transcribe, transcribe_stream
      speech          (a streaming Conformer's step)
    audio-          task audio-classification              audio        classify_audio
      classifier      (a Conformer keyword spotter)
    speech          modality audio (a Conformer)           audio        transcribe
    image           modality image (a ViT)                 image        classify_images
    lsh             attention_kind lsh (hashed buckets)    text or ids  embed, classify
    plain           any other text encoder or decoder      text or ids  embed, classify

The first kind that takes a manifest is the bundle's (`kind_of`). The manifest's own `kind` field
(runtime.bundle.KINDS) is the format's coarser view: speech, image and lsh bundles are `plain` there.
The layers above key their own tables by these names (export/kinds.py: spec and parity gate;
quantize/kinds.py: pipeline and evaluation; deploy/kinds.py: what each target refuses), so a new
kind is one `register` here and one entry in each of theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .bundle import AUDIO, CACHED_DECODER, IMAGE, SEQ2SEQ, STREAMING_SPEECH, Manifest
from .errors import EdgeformerError
from .examples import (audio_inputs, audio_label_cases, image_cases, no_cases, speech_cases, stream_inputs, text_cases,
                       token_inputs)

Cases = Callable[[Any], list[tuple[str, str, dict]]]  # model -> (name, call, args) of its task cases
RunInputs = Callable[[Any], list[dict[str, np.ndarray]]]  # model -> padded example feeds of its main graph


@dataclass(frozen=True)
class BundleKind:
    name: str
    takes: Callable[[Manifest], bool]
    calls: tuple[str, ...]  # the task calls (runtime.facade.TaskCalls) a bundle of this kind may answer
    task_cases: Cases  # the task calls recorded in vectors.json
    run_inputs: RunInputs  # the inputs of its `run` cases
    generates: bool = False  # vectors.json also records greedy and sampled generation


TEXT_CALLS, GENERATION_CALLS = ("embed", "classify"), ("generate", "stream")

class KindOrder(list):
    """Kinds tried in order: the first whose `takes` answers yes is the input's kind. The last one takes
    everything, so a kind registered later goes before it (and after every kind registered earlier)."""

    def __init__(self, kinds, what: str, error: type[EdgeformerError] = EdgeformerError):
        super().__init__(kinds)
        self.what, self.error = what, error  # "export kind", ExportError

    def first(self, *args):
        return next(kind for kind in self if kind.takes(*args))

    def named(self, name: str):
        for kind in self:
            if kind.name == name:
                return kind
        raise self.error(f"no {self.what} {name!r}; edgeformer knows: {', '.join(k.name for k in self)}")

    def register(self, kind):
        if any(k.name == kind.name for k in self):
            raise self.error(f"{self.what} {kind.name!r} is registered already")
        self.insert(len(self) - 1, kind)
        return kind

    def unregister(self, name: str) -> None:
        self.remove(self.named(name))


KINDS = KindOrder([
    BundleKind("seq2seq", lambda m: m.kind == SEQ2SEQ, GENERATION_CALLS, no_cases, token_inputs, generates=True),
    BundleKind("cached-decoder", lambda m: m.kind == CACHED_DECODER, GENERATION_CALLS, no_cases, token_inputs,
               generates=True),
    BundleKind("streaming-speech", lambda m: m.kind == STREAMING_SPEECH, ("transcribe", "transcribe_stream"),
               speech_cases, stream_inputs),
    BundleKind("audio-classifier", lambda m: m.model.task == "audio-classification", ("classify_audio",),
               audio_label_cases, audio_inputs),
    BundleKind("speech", lambda m: m.modality == AUDIO, ("transcribe",), speech_cases, audio_inputs),
    BundleKind("image", lambda m: m.modality == IMAGE, ("classify_images",), image_cases, token_inputs),
    BundleKind("lsh", lambda m: m.config.get("attention_kind") == "lsh", TEXT_CALLS, text_cases, token_inputs),
    BundleKind("plain", lambda m: True, TEXT_CALLS, text_cases, token_inputs),
], "bundle kind")


def kind_of(manifest: Manifest) -> BundleKind:
    """The first registered kind that takes `manifest` (plain takes every one)."""
    return KINDS.first(manifest)


kind_named = KINDS.named
register = KINDS.register  # a new kind is tried before every kind registered so far but the catch-all plain
unregister = KINDS.unregister


class LayerTable(dict):
    """A higher layer's part for each bundle kind (quantize: pipeline and evaluation sets; deploy: what each
    target refuses), keyed by the names `kind_of` gives: one way to register a part and to find a bundle's."""

    def __init__(self, parts, what: str, verb: str, error: type[EdgeformerError] = EdgeformerError):
        super().__init__((part.name, part) for part in parts)
        self.what, self.verb, self.error = what, verb, error  # "deployment rules", "deploys", DeployError

    def register(self, part):
        if part.name in self:
            raise self.error(f"bundle kind {part.name!r} has {self.what} already")
        self[part.name] = part
        return part

    def of(self, manifest: Manifest):
        """The part of the manifest's bundle kind."""
        name = kind_of(manifest).name
        if name not in self:
            raise self.error(f"bundle kind {name!r} has no {self.what}; edgeformer {self.verb}: {', '.join(self)}")
        return self[name]


def reads_arrays(manifest: Manifest) -> bool:
    """Image classifiers and speech recognisers: bundles fed arrays of their modality, measured on arrays, not text."""
    return manifest.modality in (IMAGE, AUDIO)
