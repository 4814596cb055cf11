"""The browser's task calls, one set per bundle kind: what the web check runs on the page (with what
the Python runtime answers), the README's JavaScript usage, and the demo page's screenshot steps.

deploy/kinds.py says which set each bundle kind uses. Every `*_cases(work, model, rng)` returns the
cases it adds and Python's answers to them; `rng` continues the check's seeded draws.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeformer.runtime.bundle import Manifest

GENERATE_TOKENS = 32
PROMPT, PROMPT_IDS = "The for statement", [[5, 17, 42, 8], [9, 3]]
SAMPLED = {"temperature": 0.8, "top_k": 20, "top_p": 0.95, "seed": 7}
TEXTS = ["The quick brown fox jumps over the lazy dog.", "Crème brûlée à la carte, naïve façade.",
         "東京は日本の首都です。", "edge 🚀 devices 🤖", "def f(x):\n    return x ** 2  # square", ""]


def tensor_json(a: np.ndarray) -> dict[str, Any]:
    return {"dtype": str(a.dtype), "shape": list(a.shape), "data": a.ravel().tolist()}


def camel(options: dict[str, Any]) -> dict[str, Any]:
    return {k.split("_")[0] + "".join(w.title() for w in k.split("_")[1:]): v for k, v in options.items()}


def vector_texts(work: Path) -> list[str]:
    """The texts of the folder's vectors (docs/vectors.md), else a few of our own."""
    path = work / "vectors.json"
    texts: list[str] = []
    if path.is_file():
        for case in json.loads(path.read_text()).get("cases", []):
            args = case.get("args", {})
            texts += [t for t in args.get("texts", []) if isinstance(t, str)]
            if isinstance(args.get("prompt"), str):
                texts.append(args["prompt"])
    return list(dict.fromkeys(texts)) or TEXTS


def clip(n: int, seed: int) -> np.ndarray:
    """n samples at 16 kHz: two tones and a little noise (deterministic)."""
    t = np.arange(n) / 16000
    noise = np.random.default_rng(seed).standard_normal(n)
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t) + 0.01 * noise).astype(np.float32)


def varied(n: int, seed: int) -> np.ndarray:
    """n samples at 16 kHz: four tones one after another, and noise. A random recogniser's text and a random
    spotter's label then change with the clip, so an answer given for another clip (or call) would show."""
    rng = np.random.default_rng(seed)
    pitch = rng.uniform(200, 3000, 4)[np.minimum(3, 4 * np.arange(n) // n)]
    return (0.4 * np.sin(2 * np.pi * pitch * np.arange(n) / 16000) + 0.05 * rng.standard_normal(n)).astype(np.float32)


def pieces_of(wave: np.ndarray, sizes: tuple[int, ...]) -> list[np.ndarray]:
    """`wave` cut into pieces of `sizes`, cycled: a microphone's buffers rarely match the stream's hop."""
    out, at = [], 0
    while at < len(wave):
        size = sizes[len(out) % len(sizes)]
        out.append(wave[at : at + size])
        at += size
    return out


def is_text_classifier(m: Manifest) -> bool:
    return m.model.task == "classification" and not m.config.get("image_size")


def embeds(m: Manifest) -> bool:
    return any(s.name == "last_hidden_state" for s in m.outputs)


# ------------------------------------------------------------------------------ the check's cases


def generation_cases(work: Path, model, rng) -> tuple[dict[str, Any], dict[str, Any]]:
    prompt = PROMPT if model.bundle.tokenizer_path is not None else PROMPT_IDS
    settings = [{"max_new_tokens": GENERATE_TOKENS}, {"max_new_tokens": GENERATE_TOKENS, **SAMPLED}]
    return ({"generate": [{"prompt": prompt, "options": camel(s)} for s in settings]},
            {"generate": [model.generate(prompt, **s).token_ids for s in settings]})


def speech_cases(work: Path, model, rng) -> tuple[dict[str, Any], dict[str, Any]]:
    from edgeformer.runtime.speech import speech_limits

    lo, hi, _ = speech_limits(model)
    waves = [clip(n, i) for i, n in enumerate(sorted({max(lo, min(hi, n)) for n in (8000, 12800)}))]
    return ({"transcribe": {"waveforms": [w.tolist() for w in waves], "sample_rate": 16000}},
            {"transcribe": model.transcribe(waves, 16000)})


def audio_cases(work: Path, model, rng) -> tuple[dict[str, Any], dict[str, Any]]:
    """A keyword spotter's classifyAudio on clips of three lengths, padded into one batch."""
    from edgeformer.runtime.speech import speech_limits

    lo, hi, _ = speech_limits(model, "audio-classification")
    waves = [varied(max(lo, min(hi, n)), 20 + i) for i, n in enumerate((16000, 9001, 4321))]
    r = model.classify_audio(waves, 16000)
    return ({"classify_audio": {"waveforms": [w.tolist() for w in waves], "sample_rate": 16000}},
            {"classify_audio": (r.labels, r.probabilities)})


# A stream's pieces: one shorter than any window (it completes no frame), one sample alone, and sizes that
# straddle the hop, so the page's buffering and cache carrying are what the check compares.
STREAM_PIECES = (333, 1, 2900, 1280, 700)


def stream_cases(work: Path, model, rng) -> tuple[dict[str, Any], dict[str, Any]]:
    """A streaming bundle: whole clips through `transcribe` (a stream each), and one recording fed in pieces
    through openStream (the text and logits after every call) and transcribeStream (the texts)."""
    from edgeformer.runtime.speech_stream import AudioStream, GreedyText, shortest

    r = model.manifest.model.stream
    waves = [varied(max(shortest(r), n), 10 + i) for i, n in enumerate((8000, 12800))]
    pieces = pieces_of(varied(max(9000, 3 * r.window_samples), 30), STREAM_PIECES)
    stream, text = AudioStream(model), GreedyText(model.manifest.config["alphabet"])
    calls = [stream.feed(p) for p in pieces] + [stream.finish()]
    return ({"transcribe": {"waveforms": [w.tolist() for w in waves], "sample_rate": 16000},
             "stream": {"pieces": [p.tolist() for p in pieces], "sample_rate": 16000}},
            {"transcribe": model.transcribe(waves, 16000),
             "stream": {"texts": [text.add(logits) for logits in calls], "logits": calls}})


def image_cases(work: Path, model, rng) -> tuple[dict[str, Any], dict[str, Any]]:
    m = model.manifest
    if m.model.task != "classification":
        return text_cases(work, model, rng)
    side, channels = int(m.config["image_size"]), int(m.config["num_channels"])
    images = rng.integers(0, 256, (3, side, side, channels), dtype=np.uint8)
    r = model.classify_images(images, layout="HWC")
    return {"images": {"images": tensor_json(images), "layout": "HWC"}}, {"images": (r.labels, r.probabilities)}


def text_cases(work: Path, model, rng) -> tuple[dict[str, Any], dict[str, Any]]:
    m = model.manifest
    if model.bundle.tokenizer_path is None:
        return {}, {}
    texts = [t for t in vector_texts(work) if t] or TEXTS[:-1]
    if m.model.task == "classification":
        r = model.classify(texts)
        return {"classify": texts}, {"classify": (r.labels, r.probabilities)}
    if embeds(m):
        return {"embed": texts}, {"embed": model.embed(texts)}
    return {}, {}


# ---------------------------------------------------------------------- the README's JavaScript


def generation_usage(manifest: Manifest) -> str:
    return ("for await (const step of model.stream('The for statement', { maxNewTokens: 32 })) {\n"
            "  output.textContent += step.texts[0];   // token by token\n}\n"
            "const { tokenIds, texts } = await model.generate('The for statement', { maxNewTokens: 32, temperature: 0.8, seed: 7 });")


def speech_usage(manifest: Manifest) -> str:
    return ("// 16 kHz mono Float32Array samples (an OfflineAudioContext at 16000 Hz decodes and resamples a file)\n"
            "const [text] = await model.transcribe([samples], 16000);")


def audio_usage(manifest: Manifest) -> str:
    return ("// 16 kHz mono Float32Array clips (an OfflineAudioContext at 16000 Hz decodes and resamples a file)\n"
            "const { labels, probabilities, labelNames } = await model.classifyAudio([samples], 16000);")


def stream_usage(manifest: Manifest) -> str:
    return ("// 16 kHz mono Float32Array pieces of any size, as they arrive (a microphone's buffers)\n"
            "const stream = model.openStream();\n"
            "for (const piece of pieces) output.textContent = (await stream.feed(piece)).text;  // the text so far\n"
            "output.textContent = (await stream.finish()).text;\n"
            "for await (const text of model.transcribeStream(pieces, 16000)) output.textContent = text;  // the same, as a loop\n"
            "const [text] = await model.transcribe([samples], 16000);  // a whole recording, through a stream of its own")


def image_usage(manifest: Manifest) -> str:
    if manifest.model.task != "classification":
        return text_usage(manifest)
    return ("// uint8 pixels (N, H, W, C) as {dtype: 'uint8', dims, data}, or ImageData from a canvas\n"
            "const { labels, probabilities } = await model.classifyImages([ctx.getImageData(0, 0, w, h)]);")


def text_usage(manifest: Manifest) -> str:
    if manifest.model.task == "classification":
        return "const { labels, probabilities } = await model.classify(['a text to label', 'another one']);"
    if embeds(manifest):
        return "const embeddings = await model.embed(['a sentence', 'another sentence']);  // L2-normalised rows"
    return ("const outputs = await model.run({ input_ids: { dtype: 'int64', dims: [1, 4], "
            "data: BigInt64Array.from([5n, 17n, 42n, 8n]) } });")


# ------------------------------------------------------------------ the demo page's screenshot


def generation_screenshot(manifest: Manifest, texts: list[str] | None = None) -> list[dict[str, Any]]:
    return [{"click": "#generate-run"}, {"wait": "#generate-speed:not(:empty)"}]


def text_screenshot(manifest: Manifest, texts: list[str] | None = None) -> list[dict[str, Any]]:
    if not (is_text_classifier(manifest) or embeds(manifest)):
        return []
    fill = [{"fill": ["#texts", "\n".join(texts)]}] if texts else []
    return fill + [{"click": "#text-run"}, {"wait": "#text-out table"}]
