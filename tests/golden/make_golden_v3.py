"""How the v3 golden artifacts were made (bundle format 3, checkpoint format 2, vectors format 1). Tests
never run this script; tests/test_formats.py reads what it wrote.

Format 3 changed the cached decoder's graph (its `logits_to_keep` input, named by the manifest's cache
record); every other kind is written at format 3 unchanged, so v3 holds the two generation kinds:

    cached/         a decoder exported with --kv-cache (kind cached-decoder, logits_to_keep)  + cached.npz
    seq2seq/        an encoder-decoder (encoder.onnx + model.onnx, kind seq2seq)               + seq2seq.npz
    made.json       the commit and tools that made them

cached.npz holds the prompt step asked for every position (`logits_to_keep` 0) and for the last one
(`keep_last.` keys, logits_to_keep 1), and a greedy generation. The models and their seeds are v2's
(make_golden_v2.py), so v2's and v3's cached decoders are the same weights in two formats.

Made by

    .venv/bin/python tests/golden/make_golden_v3.py tests/golden/v3 COMMIT

from a snapshot of one commit, as make_golden_v2.py says. Do not remake an existing version's folder.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from make_golden_v2 import TINY, made_record, outputs, save_npz


def cached_decoder(root: Path, work: Path) -> None:
    """cached/: a decoder's prompt step (all positions, then the last only) and a greedy generation."""
    from edgeformer import runtime
    from edgeformer.export import export_bundle
    from edgeformer.modeling import ModelConfig, Transformer, save

    torch.manual_seed(1)
    dec = Transformer(ModelConfig.from_dict(dict(**TINY, arch="decoder", positional="learned"))).eval()
    save(dec, work / "ckpt-decoder")
    export_bundle(work / "ckpt-decoder", root / "cached", kv_cache=True)
    model = runtime.load(root / "cached")
    keep = model.manifest.cache.logits_to_keep
    prompts = [[5, 17, 59, 3], [7, 60]]
    gen = model.generate(prompts, max_new_tokens=8)
    heads, head_dim = TINY["n_heads"], TINY["d_model"] // TINY["n_heads"]
    step = {"input_ids": np.array([[5, 17, 59]]), "attention_mask": np.ones((1, 3), np.int64),
            "position_ids": np.arange(3)[None], keep: np.array([0], np.int64),
            **{n: np.zeros((1, heads, 0, head_dim), np.float32) for n in model.manifest.cache.past}}
    last = {**step, keep: np.array([1], np.int64)}
    save_npz(root / "cached.npz", prompt_0=prompts[0], prompt_1=prompts[1], token_ids=gen.token_ids,
             **{f"step.{k}": v for k, v in step.items()}, **outputs("out", model(step)),
             **outputs("keep_last", model(last)))


def seq2seq(root: Path, work: Path) -> None:
    """seq2seq/: v2's encoder-decoder (its module has moved), the encoder's outputs and a greedy generation."""
    from edgeformer import runtime
    from edgeformer.export import export_bundle
    from edgeformer.modeling import ModelConfig, save
    from edgeformer.modeling.models.seq2seq import Seq2SeqTransformer

    torch.manual_seed(5)
    s2s = Seq2SeqTransformer(ModelConfig.from_dict({**TINY, "arch": "seq2seq", "positional": "sinusoidal", "norm": "post",
                                                    "activation": "relu"})).eval()
    save(s2s, work / "ckpt-seq2seq")
    export_bundle(work / "ckpt-seq2seq", root / "seq2seq")
    model = runtime.load(root / "seq2seq")
    sources = [[3, 4, 5, 6, 7, 8, 9], [50, 1]]
    gen = model.generate(sources, max_new_tokens=8)
    src_ids = np.array([[3, 4, 5, 6, 7, 8, 9], [50, 1, 0, 0, 0, 0, 0]], dtype=np.int64)
    src_mask = (np.arange(7)[None] < np.array([[7], [2]])).astype(np.int64)
    cross = model.graph("encoder")({"input_ids": src_ids, "attention_mask": src_mask})
    save_npz(root / "seq2seq.npz", input_ids=src_ids, attention_mask=src_mask, source_0=sources[0],
             source_1=sources[1], token_ids=gen.token_ids, **outputs("encoder", cross))


def main(root: Path, commit: str | None = None) -> None:
    import edgeformer
    from edgeformer.runtime.artifacts import atomic_directory

    print(f"edgeformer from {Path(edgeformer.__file__).parent}")
    record = made_record(commit)
    record["command"] = "python tests/golden/make_golden_v3.py tests/golden/v3 [COMMIT]"
    record.pop("left_out")
    with atomic_directory(root) as tmp:  # refuses an existing folder: a version's goldens are made once
        work = tmp / "work"
        cached_decoder(tmp, work)
        seq2seq(tmp, work)
        shutil.rmtree(work)  # the checkpoints: only their bundles are kept
        (tmp / "made.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "v3"), *sys.argv[2:3])
