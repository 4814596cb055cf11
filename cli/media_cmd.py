"""`edgeformer run BUNDLE --image FILE` and `--audio FILE.wav`: image and speech bundles from files. No PyTorch.

Image files are read with Pillow (the optional `images` extra: PNG alone has five colour types, four
bit depths, palettes and interlacing, which is a decoder's job); they decode to HWC uint8 and are
converted to the model's channel count (RGB to gray by luma). WAV files are read by runtime/wav.py
(integer PCM or float, every claimed length checked against the file), then checked like any
waveform (16 kHz, mono, samples in [-1, 1]).
"""

from __future__ import annotations

import time

import click
import numpy as np

from edgeformer import runtime
from edgeformer.runtime.errors import EdgeformerError

from .output import write_json
from .run_cmd import top_labels


def run_images(model: runtime.Model, paths: tuple[str, ...], resize: bool, json_out) -> None:
    from edgeformer.runtime.images import files_to_images, image_geometry

    _, channels = image_geometry(model)
    result = model.classify_images(files_to_images(paths, channels), layout="HWC", resize=resize)
    if json_out != "-":
        for path, p in zip(paths, result.probabilities):
            click.echo(f"{path}: {top_labels(result.label_names, p)}")
    write_json(json_out, {"files": list(paths), "labels": result.labels, "label_names": result.label_names,
                          "probabilities": result.probabilities})


def run_audio(model: runtime.Model, paths: tuple[str, ...], json_out) -> None:
    from edgeformer.runtime.speech import read_wav

    if model.manifest.model.task == "audio-classification":  # a keyword spotter labels each file
        clips = [read_wav(path) for path in paths]
        result = model.classify_audio([samples for samples, _ in clips], sample_rate=clips[0][1])
        if json_out != "-":
            for path, p in zip(paths, result.probabilities):
                click.echo(f"{path}: {top_labels(result.label_names, p)}")
        write_json(json_out, {"files": list(paths), "labels": result.labels, "label_names": result.label_names,
                              "probabilities": result.probabilities})
        return
    texts, seconds, rates = [], [], []
    for path in paths:
        samples, rate = read_wav(path)
        start = time.perf_counter()
        texts += model.transcribe([samples], sample_rate=rate)
        seconds.append(time.perf_counter() - start)
        rates.append(seconds[-1] / (len(samples) / rate))
    if json_out != "-":
        for path, text, rtf in zip(paths, texts, rates):
            click.echo(f"{path}: {text!r}  (real-time factor {rtf:.3f})")
    write_json(json_out, {"files": list(paths), "texts": texts, "seconds": seconds, "real_time_factor": rates})


def run_audio_stream(model: runtime.Model, paths: tuple[str, ...], json_out) -> None:
    """Each file fed a chunk at a time, as a microphone would: the transcript whenever it changes, and the
    compute each chunk took."""
    from edgeformer.runtime.speech import read_wav
    from edgeformer.runtime.speech_stream import stream_record

    hop = stream_record(model).hop_samples
    files = []
    for path in paths:
        samples, rate = read_wav(path)
        pieces = [samples[i : i + hop] for i in range(0, len(samples), hop)]
        partials, last, ms = [], None, []
        steps = model.transcribe_stream(pieces, sample_rate=rate)
        for i in range(len(pieces) + 1):
            start = time.perf_counter()
            text = next(steps)
            ms.append((time.perf_counter() - start) * 1000)
            if text != last:
                at = min(len(samples), (i + 1) * hop) / rate
                partials.append({"seconds": round(at, 3), "text": text})
                if json_out != "-":
                    click.echo(f"{path} @ {at:6.2f} s: {text!r}")
                last = text
        files.append({"file": path, "text": last, "partials": partials, "chunk_ms": hop * 1000 // rate,
                      "compute_ms_median": float(np.median(ms)), "compute_ms_max": float(np.max(ms))})
        if json_out != "-":
            click.echo(f"{path}: {last!r}  (compute per {hop * 1000 // rate} ms chunk: median {np.median(ms):.1f} ms, "
                       f"max {np.max(ms):.1f} ms)")
    write_json(json_out, {"files": files})


def check_media_options(images, audio, other_inputs: bool, stream: bool = False) -> None:
    if stream and not audio:
        raise EdgeformerError("--stream transcribes --audio files with a streaming bundle; give --audio")
    if images and audio:
        raise EdgeformerError("give --image or --audio, not both")
    if (images or audio) and other_inputs:
        raise EdgeformerError("--image/--audio take no other inputs (--text, --file, --ids, --input)")
