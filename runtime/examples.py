"""Example inputs of each input type, from fixed seeds: what test vectors record and ports rerun.

    token_inputs   padded random ids, masks and positions for any graph the manifest describes
    audio_inputs   tone clips right-padded into waveforms, with their lengths
    text_cases     embed and/or classify on built-in texts (accents, CJK, emoji, code, one past the length)
    image_cases    classify_images on a deterministic uint8 batch
    speech_cases   transcribe on tone clips

runtime/kinds.py says which of them each bundle kind uses. Recording the same bundle twice
gives the same inputs.
"""

from __future__ import annotations

import numpy as np

from .inputs import GLOBAL_MASK, MASK, axis_sizes, example_inputs, global_slots

SEED = 0
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Crème brûlée, naïve façade, São Paulo, Zürich",
    "边缘设备上的小型变换器 と 日本語のテキスト",
    "Launch 🚀 on the edge 🌍👩‍💻 today!",
    "def add(a, b):\n    return a + b  # [CLS] <pad>",
]
LONG_TEXT = " ".join(f"sentence {i} runs on small devices near the data." for i in range(400))
BATCH_SHAPES = ((3, 12), (2, 5))  # (rows, tokens) of the two run cases


# ------------------------------------------------------------------------------------- run inputs


def token_inputs(model) -> list[dict[str, np.ndarray]]:
    """Two padded batches (3 rows, then 2, at two lengths) of valid random inputs for the main graph."""
    m = model.manifest
    rng = np.random.default_rng(SEED)
    out = []
    for batch, seq in BATCH_SHAPES:
        sizes = axis_sizes(m, batch, seq)
        if "past" in sizes:  # a cached decoder's prompt step (or a seq2seq decoder's first): an empty past
            sizes["past"] = max(0, int(m.axes["past"].get("min", 0)))
            if "total" in sizes:
                sizes["total"] = sizes["past"] + sizes["seq"]
        feeds = example_inputs(m.inputs, sizes, rng, padded=True, global_tokens=global_slots(m))
        for spec in m.inputs:  # a second mask (a seq2seq decoder's source mask): right-padded too, never empty
            if spec.name.endswith(MASK) and spec.name not in (MASK, GLOBAL_MASK):
                feeds[spec.name] = right_padded_mask(feeds[spec.name].shape, rng, spec.dtype)
        out.append(feeds)
    return out


def audio_inputs(model) -> list[dict[str, np.ndarray]]:
    """Two padded batches of tone clips (3 rows, then 2) within the model's lengths."""
    rng = np.random.default_rng(SEED)
    lo, hi = speech_bounds(model)
    return [padded_audio(rng, lengths) for lengths in ([min(hi, lo + 5000), lo, min(hi, lo + 2345)],
                                                      [min(hi, lo + 3001), min(hi, lo + 7)])]


def right_padded_mask(shape: tuple[int, int], rng: np.random.Generator, dtype) -> np.ndarray:
    lengths = np.full(shape[0], shape[1])
    lengths[1:] = rng.integers(1, shape[1] + 1, size=shape[0] - 1)
    return (np.arange(shape[1])[None, :] < lengths[:, None]).astype(dtype)


# ------------------------------------------------------------------------------------ task cases


def text_cases(model) -> list[tuple[str, str, dict]]:
    """embed (with a last_hidden_state output) and classify (a classifier) on the built-in texts."""
    m = model.manifest
    if model.bundle.tokenizer_path is None or "input_ids" not in {s.name for s in m.inputs} or \
            m.model.task == "causal-lm":
        return []
    texts, cases = TEXTS + [LONG_TEXT], []
    if "last_hidden_state" in {s.name for s in m.outputs}:
        cases.append(("texts", "embed", {"texts": texts, "normalize": True}))
    if m.model.task == "classification":
        cases.append(("texts", "classify", {"texts": texts}))
    return cases


def image_cases(model) -> list[tuple[str, str, dict]]:
    if model.manifest.model.task != "classification":
        return []
    return [("images", "classify_images", {"images": example_images(model), "layout": "HWC"})]


def speech_cases(model) -> list[tuple[str, str, dict]]:
    return [("tones", "transcribe", {"waveforms": example_clips(model), "sample_rate": 16000})]


def audio_label_cases(model) -> list[tuple[str, str, dict]]:
    return [("tones", "classify_audio", {"waveforms": example_clips(model), "sample_rate": 16000})]


def no_cases(model) -> list[tuple[str, str, dict]]:
    return []


# --------------------------------------------------------------------------------- images, audio


def example_images(model) -> np.ndarray:
    """(3, S, S, C) uint8: a diagonal gradient, a checkerboard, and stripes with a bright square."""
    side, channels = int(model.manifest.config["image_size"]), int(model.manifest.config["num_channels"])
    y, x = np.mgrid[0:side, 0:side]
    gradient = (x + y) * 255 // max(1, 2 * side - 2)
    checker = ((x // max(1, side // 4) + y // max(1, side // 4)) % 2) * 255
    stripes = np.where(x % 3 == 0, 200, 30)
    stripes[side // 4: side // 2, side // 4: side // 2] = 255
    images = []
    for k, base in enumerate((gradient, checker, stripes)):
        planes = [np.roll(base, c * (k + 1), axis=1) for c in range(channels)]  # channels differ a little
        images.append(np.stack(planes, axis=-1))
    return np.stack(images).astype(np.uint8)


def speech_bounds(model) -> tuple[int, int]:
    """(fewest, most) samples a recording may have: a streaming bundle's only lower bound is one frame."""
    spec = {s.name: s for s in model.manifest.inputs}.get("lengths")
    if spec is None:
        from .speech_stream import NO_LIMIT, shortest

        return shortest(model.manifest.model.stream), NO_LIMIT
    return int(spec.min), int(spec.max)


def stream_inputs(model) -> list[dict[str, np.ndarray]]:
    """Two steps of a streaming speech bundle: a stream's first (empty caches, a whole chunk of tones) and
    a last one (caches half full of small random values, one frame of speech)."""
    rng = np.random.default_rng(SEED)
    record, specs = model.manifest.model.stream, {s.name: s for s in model.manifest.inputs}
    window = tone_clip(record.window_samples, (440.0, 880.0), rng)[None]
    feeds = []
    for valid, fill in ((record.chunk_frames, 0.0), (1, 0.1)):
        feed = {"audio": window, record.valid_frames: np.array([valid], np.int64)}
        for name in record.state:
            shape = [1 if d == "batch" else d for d in specs[name].shape]
            feed[name] = (fill * rng.standard_normal(shape)).astype(np.float32) if specs[name].dtype == "float32" \
                else np.full(shape, int(fill * 5 * record.chunk_frames), np.int64)
        feeds.append(feed)
    return feeds


def tone_clip(n: int, freqs: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """Tones that follow each other in time, with a little noise: float32 at 16 kHz."""
    t = np.arange(n) / 16000.0
    part = np.minimum(np.arange(n) * len(freqs) // max(1, n), len(freqs) - 1)
    wave = 0.3 * np.sin(2 * np.pi * np.asarray(freqs)[part] * t) + 0.02 * rng.standard_normal(n)
    return wave.astype(np.float32)


def example_clips(model) -> list[np.ndarray]:
    """Two clips of different lengths (about 0.6 s and 0.3 s, within the model's limits)."""
    lo, hi = speech_bounds(model)
    rng = np.random.default_rng(SEED)
    return [tone_clip(min(hi, max(lo, 9600)), (440.0, 660.0, 880.0), rng),
            tone_clip(min(hi, max(lo, 4800)), (300.0, 1200.0), rng)]


def padded_audio(rng: np.random.Generator, lengths: list[int]) -> dict[str, np.ndarray]:
    """Tone clips right-padded with zeros into (B, N) waveforms, and their lengths."""
    clips = [tone_clip(n, (float(rng.uniform(200, 3000)),), rng) for n in lengths]
    waves = np.zeros((len(clips), max(lengths)), dtype=np.float32)
    for i, c in enumerate(clips):
        waves[i, : len(c)] = c
    return {"waveforms": waves, "lengths": np.array(lengths, dtype=np.int64)}
