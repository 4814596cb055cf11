"""Every bundle kind's deployment rules, in one table keyed by the runtime's kind names (runtime/kinds.py).

    kind            refused by         the browser's task calls (deploy/web_tasks.py)
    seq2seq         tensorrt, jetson   generate (greedy and seeded sampling)
    cached-decoder  tensorrt, jetson   generate
    streaming-                         transcribe (a stream per clip), openStream / transcribeStream
      speech                           (one recording in pieces)
    audio-                             classifyAudio
      classifier
    speech                             transcribe
    image                              classifyImages
    lsh             web                embed / classify
    plain                              embed / classify

Why each refusal: generation keeps its cache in onnxruntime's buffers, which a TensorRT engine
does not have; LSH's bucket decisions (an ArgMax over rotated keys) can flip between the browser's
WASM kernels and Python's, so no output check could hold. `refuse_kind` runs before the target's
own refusals (deploy/folder.py). A new bundle kind is one entry here (its runtime kind first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from edgeformer.runtime.bundle import Bundle, Manifest
from edgeformer.runtime.kinds import LayerTable

from .folder import DeployError
from .web_tasks import (audio_cases, audio_usage, generation_cases, generation_screenshot, generation_usage,
                        image_cases, image_usage, speech_cases, speech_usage, stream_cases, stream_usage, text_cases,
                        text_screenshot, text_usage)

TRT_GENERATION = ("{name} is {what} bundle; TensorRT deployments cover encoders, classifiers, ViTs and decoders "
                  "without a cache (generation keeps its cache in onnxruntime's buffers): deploy it with "
                  "--target arm64 or run it with onnxruntime")
WEB_LSH = ("{path} uses LSH attention: its bucket decisions (an ArgMax over rotated keys) can flip between the "
           "browser's WASM kernels and Python's, and the browser cannot be given Python's decisions, so no output "
           "check can hold; deploy a full, local or longformer attention bundle")
WebCases = Callable[[Any, Any, Any], tuple[dict[str, Any], dict[str, Any]]]  # (work, model, rng) -> (cases, expect)


@dataclass(frozen=True)
class DeployKind:
    name: str  # a runtime kind
    web_cases: WebCases  # the task calls the web check runs on the page, and Python's answers
    web_usage: Callable[[Manifest], str]  # the README's JavaScript for the task
    web_screenshot: Callable[..., list[dict[str, Any]]] = text_screenshot  # (manifest, texts) -> the demo page's steps
    refuses: dict[str, str] = field(default_factory=dict)  # target -> why ({name}, {path}: the bundle's)


def _trt(what: str) -> dict[str, str]:
    why = TRT_GENERATION.replace("{what}", what)
    return {"tensorrt": why, "jetson": why}


KINDS = LayerTable([
    DeployKind("seq2seq", generation_cases, generation_usage, generation_screenshot, _trt("a seq2seq")),
    DeployKind("cached-decoder", generation_cases, generation_usage, generation_screenshot,
               _trt("a key/value-cache decoder")),
    DeployKind("streaming-speech", stream_cases, stream_usage),
    DeployKind("audio-classifier", audio_cases, audio_usage),
    DeployKind("speech", speech_cases, speech_usage),
    DeployKind("image", image_cases, image_usage),
    DeployKind("lsh", text_cases, text_usage, refuses={"web": WEB_LSH}),
    DeployKind("plain", text_cases, text_usage),
], "deployment rules", "deploys", DeployError)


register = KINDS.register
deploy_kind = KINDS.of  # the deployment rules of the manifest's bundle kind


def refuse_kind(bundle: Bundle, target: str, manifest: Manifest) -> None:
    """Raise DeployError (one line) when the bundle's kind cannot go to `target`."""
    why = deploy_kind(manifest).refuses.get(target)
    if why is not None:
        raise DeployError(why.format(name=bundle.path.name, path=bundle.path))
