"""A streaming speech bundle (`edgeformer export --streaming`, a Conformer trained to stream): one graph
that is one step of modeling/models/conformer_stream.py, and its parity gate.

    audio (batch, W) ─┐                                        ┌─► logits (batch, C, vocab)
    valid_frames      │                                        │   next_keys, next_values,
    keys, values      ├─► model.onnx (front end, subsampling, ─┤   next_cached_frames,
    cached_frames     │   L cached frames of attention, causal  │   next_conv_history
    conv_history     ─┘   convolution history)                 ┘

The gate streams random audio through the loaded bundle with the runtime's own driver
(runtime/speech_stream.py: windows, overlap, the last padded window), in pieces of several sizes
that do not match the chunk, and compares every frame's logits with PyTorch's offline
`encode(..., context=(C, left chunks))` on the whole recording: a stream must give what the model
gives the recording at once. Recordings are chosen to end mid-chunk, on a chunk's edge, and past the
attention cache's length, so the cache's eviction is checked too.
"""

from __future__ import annotations

import numpy as np
import torch

from edgeformer.modeling.models.audio import min_samples
from edgeformer.modeling.models.conformer_stream import ConformerStream
from edgeformer.runtime.bundle import MODEL_FILE, STREAMING_SPEECH, StreamRecord, TensorSpec
from edgeformer.runtime.model import Model
from edgeformer.runtime.speech_stream import stream_logits

from .onnx import Axis, ExportError, GraphExport
from .parity import FLOAT32_ATOL, CaseParity, OutputParity, ParityReport, compare
from .speech import random_audio
from .specs import ExportSpec, ExportRequest

STATE = ["keys", "values", "cached_frames", "conv_history"]
NEXT_STATE = ["next_keys", "next_values", "next_cached_frames", "next_conv_history"]


def stream_spec(model, tokenizer=None, request: ExportRequest | None = None) -> ExportSpec:
    cfg = model.cfg
    if cfg.arch != "conformer":
        raise ExportError(f"--streaming is for speech recognisers (arch conformer); this checkpoint is an {cfg.arch}")
    if not cfg.speech.streaming:
        raise ExportError("this Conformer's convolution is centred: it reads frames ahead of any chunk. --streaming "
                          "needs one trained to stream (edgeformer train --arch conformer --streaming)")
    geometry = request.stream
    step = ConformerStream(model, geometry)
    C, L, W, layers, d = geometry.chunk, geometry.left_frames, geometry.window_samples, cfg.n_layers, cfg.d_model
    history = cfg.speech.conv_kernel - 1
    inputs = [TensorSpec("audio", "float32", ("batch", W)),
              TensorSpec("valid_frames", "int64", ("batch",), min=1, max=C),
              TensorSpec("keys", "float32", (layers, "batch", L, d)),
              TensorSpec("values", "float32", (layers, "batch", L, d)),
              TensorSpec("cached_frames", "int64", ("batch",), min=0, max=L),
              TensorSpec("conv_history", "float32", (layers, "batch", d, history))]
    B = 2  # two rows, so the batch axis is not specialised to a constant
    args = (torch.randn(B, W) * 0.1, torch.tensor([C, 1]), torch.randn(layers, B, L, d), torch.randn(layers, B, L, d),
            torch.tensor([L, 1]), torch.randn(layers, B, d, history))
    outputs = {"logits": ("batch", None, None), "next_keys": (None, "batch", None, None),
               "next_values": (None, "batch", None, None), "next_cached_frames": ("batch",),
               "next_conv_history": (None, "batch", None, None)}
    graph = GraphExport(MODEL_FILE, step, inputs, list(ConformerStream.output_names), {"batch": Axis(1)}, args=args,
                        output_axes=outputs, attention_count=layers)
    record = StreamRecord(C, geometry.left_chunks, W, geometry.hop_samples, "valid_frames", STATE, NEXT_STATE)
    return ExportSpec(STREAMING_SPEECH, [graph], stream=record)


def stream_cases(record: StreamRecord) -> list[tuple[int, int]]:
    """(samples, piece size): one frame; ending mid-chunk; ending on a chunk's edge, fed a hop at a time;
    and past the attention cache, in pieces that match nothing."""
    edge = record.window_samples + 2 * record.hop_samples
    past_cache = record.window_samples + (record.left_chunks + 2) * record.hop_samples + 77
    return [(min_samples(7), 1000), (4321, 1000), (edge, record.hop_samples), (past_cache, 777)]


def check_stream_parity(model, bundle: Model, cases: list[tuple[int, int]] | None = None, atol: float = FLOAT32_ATOL,
                        seed: int = 0) -> ParityReport:
    """PyTorch offline with the bundle's chunked attention against the bundle streamed piece by piece."""
    model = model.eval()
    record = bundle.manifest.model.stream
    rng = np.random.default_rng(seed)
    report = ParityReport(atol)
    for samples, piece in cases or stream_cases(record):
        wave = random_audio(1, samples, samples, rng)["waveforms"]
        with torch.no_grad():
            features, frames = model.features(torch.from_numpy(wave), torch.tensor([samples]))
            ref = model.encode(features, frames, context=(record.chunk_frames, record.left_chunks))["logits"][0].numpy()
        got = stream_logits(bundle, wave[0], piece)
        same = len(ref) == len(got)
        frames_out = OutputParity("frames", float(abs(len(ref) - len(got))), float(abs(len(ref) - len(got))), float(same))
        logits = compare("logits", ref, got, None) if same else OutputParity("logits", float("inf"), float("inf"), 0.0)
        report.cases.append(CaseParity(1, samples, False, [logits, frames_out]))
    return report
