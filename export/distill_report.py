"""The distillation report: teacher and student exported (parity gate included), timed in the same
run, their sizes and task metrics side by side with the retention ratio. Text, image and speech
students get the same report; each is timed on full inputs of its kind (`report_input`).

Each bundle is timed in its own blocks, never call by call, the two alternating
(`edgeformer.runtime.bench.time_alternating`), so neither's idle threads tax the other and a
machine that speeds up or slows down mid-run shifts both alike.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from edgeformer import runtime
from edgeformer.runtime.bench import time_alternating
from edgeformer.runtime.bundle import AUDIO
from edgeformer.runtime.inputs import manifest_inputs
from edgeformer.runtime.speech import SAMPLE_RATE, pad_waveforms, speech_limits

from .bundle import export_bundle

REPORT_BATCHES = (1, 8)
REPORT_SEQ = 128  # tokens per text row
REPORT_SECONDS = 2.0  # audio per speech row


def distill_report(teacher_ckpt: str | os.PathLike, student_ckpt: str | os.PathLike, result,
                   bundles_dir: str | os.PathLike | None = None, seconds: float = 2.0, rounds: int = 3) -> dict:
    """Export both checkpoints and measure them: parameters, bundle size, median latency at batch 1 and 8.

    `result` is the distillation's DistillResult (its metric, both models' values, retention).
    Bundles go to `bundles_dir`/teacher and /student when given, else to a temporary folder.
    `seconds` is the timing per bundle and batch, in `rounds` alternating rounds.
    """
    checkpoints = {"teacher": teacher_ckpt, "student": student_ckpt}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(bundles_dir) if bundles_dir else Path(tmp)
        exported = {name: export_bundle(ckpt, root / name, overwrite=True) for name, ckpt in checkpoints.items()}
        models = {name: runtime.load(e.path) for name, e in exported.items()}
        size, described = report_input(models)
        latency = bundle_latencies(models, size, seconds, rounds)
    metric_of = {"teacher": result.teacher_metric, "student": result.student_metric}
    report = {"seq": size if "seq" in models["teacher"].manifest.axes else None, "input": described,
              "metric": result.metric, "retention": result.retention, "models": {}}
    for name, e in exported.items():
        report["models"][name] = {
            "checkpoint": str(checkpoints[name]),
            "parameters": e.manifest.model.parameters,
            "bundle_mb": sum(f["bytes"] for f in e.manifest.files.values()) / 1e6,
            "latency_ms": latency[name],
            "parity_max_abs": max(o.max_abs for o in e.report.worst.values()),
            result.metric: metric_of[name],
        }
    return report


def report_input(models: dict[str, runtime.Model]) -> tuple[int, str]:
    """The input size every model is timed at, and how the report names it: tokens per row (text),
    samples per row (speech; both models' limits allowing), or the images' fixed size."""
    first = next(iter(models.values()))
    if "seq" in first.manifest.axes:
        seq = min(REPORT_SEQ, *(m.manifest.axes["seq"]["max"] for m in models.values()))
        return seq, f"{seq} tokens"
    if first.manifest.modality == AUDIO:
        samples = min(int(REPORT_SECONDS * SAMPLE_RATE), *(speech_limits(m)[1] for m in models.values()))
        return samples, f"{samples / SAMPLE_RATE:.2f} s of audio"
    side = int(first.manifest.config["image_size"])
    return side, f"{side}x{side} images"


def report_feeds(model: runtime.Model, batch: int, size: int) -> dict:
    """Full-length inputs of `batch` rows: `size` tokens or samples per row (images: their own size)."""
    if model.manifest.modality == AUDIO:
        rng = np.random.default_rng(0)
        waves, lengths = pad_waveforms([0.1 * rng.standard_normal(size).astype(np.float32) for _ in range(batch)])
        return model.validate({"waveforms": waves, "lengths": lengths})
    return model.validate(manifest_inputs(model.manifest, batch, size, 0, padded=False))


def bundle_latencies(models: dict[str, runtime.Model], size: int, seconds: float, rounds: int) -> dict[str, dict[str, float]]:
    """name -> {str(batch): median milliseconds} at each of REPORT_BATCHES, on full inputs (report_feeds)."""
    latency: dict[str, dict[str, float]] = {name: {} for name in models}
    for batch in REPORT_BATCHES:
        runs = {}
        for name, m in models.items():
            feeds = report_feeds(m, batch, size)
            runs[name] = (lambda s, f: lambda: s.run(None, f))(m.session, feeds)
        timed = time_alternating(runs, rounds, seconds, warmup=3, min_runs=5)
        for name, st in timed.items():
            latency[name][str(batch)] = st.median_ms
    return latency
