"""How the v4 golden artifacts were made (bundle format 4, checkpoint format 2, vectors format 1). Tests
never run this script; tests/test_formats.py reads what it wrote.

Format 4 added the kind streaming-speech and the manifest's `model.stream` record; every other kind is
written at format 4 unchanged, so v4 holds the new kind:

    stream/         a Conformer trained-to-stream's step (export --streaming, chunks of 80 ms,
                    3 chunks of attention past)                                  + stream.npz
    made.json       the commit and tools that made them

stream.npz holds a clip (tones in noise, ending mid-chunk), the logits of streaming it in pieces of
700 samples, and its transcript.

Made by

    .venv/bin/python tests/golden/make_golden_v4.py tests/golden/v4 COMMIT

from a snapshot of one commit, as make_golden_v2.py says. Do not remake an existing version's folder.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from make_golden_v2 import made_record, save_npz

SPEECH = dict(d_model=32, n_heads=2, n_layers=2, d_ff=64, conv_kernel=5, dropout=0.0, streaming=True)


def streaming_speech(root: Path, work: Path) -> None:
    """stream/: a random streaming Conformer with BatchNorm statistics that are not the identity."""
    from edgeformer import runtime
    from edgeformer.export import export_bundle
    from edgeformer.modeling import save
    from edgeformer.modeling.models.conformer import Conformer
    from edgeformer.modeling.models.conformer_stream import StreamGeometry
    from edgeformer.modeling.training.speech import conformer_config
    from edgeformer.runtime.speech_stream import stream_logits

    torch.manual_seed(11)
    model = Conformer(conformer_config("tiny", **SPEECH)).eval()
    for block in model.blocks:
        block.conv.batch_norm.running_mean.normal_(0, 0.5)
        block.conv.batch_norm.running_var.uniform_(0.5, 2.0)
    save(model, work / "ckpt-stream")
    export_bundle(work / "ckpt-stream", root / "stream", stream=StreamGeometry(chunk=2, left_chunks=3))
    bundle = runtime.load(root / "stream")
    rng = np.random.default_rng(4)
    t = np.arange(9876) / 16000
    clip = (0.3 * np.sin(2 * np.pi * np.where(t < 0.3, 440.0, 1320.0) * t) + 0.02 * rng.standard_normal(len(t)))
    clip = clip.astype(np.float32)
    save_npz(root / "stream.npz", clip=clip, logits=stream_logits(bundle, clip, 700),
             text=np.array(bundle.transcribe([clip])[0]))


def main(root: Path, commit: str | None = None) -> None:
    import edgeformer
    from edgeformer.runtime.artifacts import atomic_directory

    print(f"edgeformer from {list(edgeformer.__path__)}")
    record = made_record(commit)
    record["command"] = "python tests/golden/make_golden_v4.py tests/golden/v4 [COMMIT]"
    record.pop("left_out")
    with atomic_directory(root) as tmp:  # refuses an existing folder: a version's goldens are made once
        work = tmp / "work"
        streaming_speech(tmp, work)
        shutil.rmtree(work)  # the checkpoint: only its bundle is kept
        (tmp / "made.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "v4"), *sys.argv[2:3])
