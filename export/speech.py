"""A speech bundle (arch conformer): raw audio in, CTC logits out, features computed inside the graph.

    waveforms (batch, samples) float32 ─┐
    lengths   (batch,)         int64   ─┴─► model.onnx ─► logits (batch, frames, vocab), logit_lengths (batch,)

A keyword spotter (num_labels > 0) returns one row of label logits per clip instead: logits (batch, labels).

The bundle kind is `plain` (one graph, no cache). Its parity gate feeds random noise-like audio
of several lengths (the shortest input, odd lengths that end mid-frame, and long padded batches
whose rows all differ in length) and compares logits at every valid frame of every row, and the
frame counts exactly; what the graph computes past a row's end is not part of its contract.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from edgeformer.modeling.models.audio import min_samples
from edgeformer.runtime.bundle import MODEL_FILE, PLAIN, TensorSpec

from .onnx import Axis, GraphExport
from .parity import FLOAT32_ATOL, CaseParity, OutputParity, ParityReport, compare
from .specs import ExportSpec

SHORTEST_FRAMES = 7  # the fewest feature frames that leave one frame after 4x subsampling


class _SpeechOutputs(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, waveforms, lengths):
        out = self.model(waveforms, lengths)
        return tuple(out[name] for name in self.model.output_names)


def sample_limits(cfg) -> tuple[int, int]:
    return min_samples(SHORTEST_FRAMES), min_samples(cfg.max_len)


def speech_spec(model, tokenizer=None, request=None) -> ExportSpec:
    cfg = model.cfg
    lo, hi = sample_limits(cfg)
    inputs = [TensorSpec("waveforms", "float32", ("batch", "samples")),
              TensorSpec("lengths", "int64", ("batch",), min=lo, max=hi)]
    axes = {"batch": Axis(1), "samples": Axis(lo, hi)}  # Dim.AUTO: the exporter relates frames to samples itself
    n = 9000  # two rows of different lengths, so neither axis is specialised to a constant
    args = (torch.randn(2, n) * 0.1, torch.tensor([n, n - 2345]))
    graph = GraphExport(MODEL_FILE, _SpeechOutputs(model), inputs, list(model.output_names), axes, args=args,
                        output_axes={"logits": ("batch", None)} if cfg.num_labels else
                        {"logits": ("batch", "frames", None), "logit_lengths": ("batch",)},
                        attention_count=cfg.n_layers)
    return ExportSpec(PLAIN, [graph])


def speech_cases(cfg) -> list[tuple[int, int]]:
    """(batch, samples): the shortest input, lengths that end mid-frame, padded batches, and a long one."""
    lo, hi = sample_limits(cfg)
    return [(1, lo), (1, 4321), (3, 16000), (4, 8011), (2, min(hi, 48000 + 77))]


def random_audio(batch: int, samples: int, lo: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Tones in noise, rows after the first right-padded with zeros to random lengths in [lo, samples]."""
    t = np.arange(samples) / 16000
    waves = np.stack([0.3 * np.sin(2 * np.pi * rng.uniform(200, 3000) * t) + 0.05 * rng.standard_normal(samples)
                      for _ in range(batch)]).astype(np.float32)
    lengths = np.full(batch, samples, dtype=np.int64)
    if batch > 1:
        lengths[1:] = rng.integers(lo, samples + 1, size=batch - 1)
    for i, n in enumerate(lengths):
        waves[i, n:] = 0.0
    return {"waveforms": waves, "lengths": lengths}


def check_speech_parity(model, run: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]],
                        cases: list[tuple[int, int]] | None = None, atol: float = FLOAT32_ATOL, seed: int = 0) -> ParityReport:
    """PyTorch against the bundle on padded batches of audio: logits at valid frames, frame counts exactly."""
    model = model.eval()
    rng = np.random.default_rng(seed)
    lo, _ = sample_limits(model.cfg)
    report = ParityReport(atol)
    for batch, samples in cases or speech_cases(model.cfg):
        feeds = random_audio(batch, samples, lo, rng)
        with torch.no_grad():
            ref = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        got = run(feeds)
        if model.cfg.num_labels:  # a keyword spotter: one row of logits per clip
            report.cases.append(CaseParity(batch, samples, batch > 1,
                                           [compare("logits", ref["logits"].numpy(), np.asarray(got["logits"]), None)]))
            continue
        ref_n, got_n = ref["logit_lengths"].numpy(), np.asarray(got["logit_lengths"])
        valid = np.arange(ref["logits"].shape[1])[None, :] < ref_n[:, None]
        lengths = OutputParity("logit_lengths", float(np.abs(ref_n - got_n).max()), float(np.abs(ref_n - got_n).mean()),
                               1.0 if np.array_equal(ref_n, got_n) else 0.0)
        logits = compare("logits", ref["logits"].numpy(), np.asarray(got["logits"]), valid)
        report.cases.append(CaseParity(batch, samples, batch > 1, [logits, lengths]))
    return report
