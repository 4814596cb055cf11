"""How the golden artifacts in this folder were made. Tests never run this script.

The artifacts pin the formats this project has written, so that every later edgeformer is tested
to read them (tests/test_formats.py): they must load, pass validation and compute what they
computed when written. Each folder has an .npz beside it with its recorded inputs and outputs
(numpy arrays only, never pickle).

    v1/checkpoint/        an encoder classifier with a tokenizer (checkpoint format 1: config.json without
                          a format field)                                                + checkpoint.npz
    v1/plain/             that checkpoint exported (bundle format 1, no `kind`)           + plain.npz
    v1/cached/            a decoder exported with --kv-cache                              + cached.npz
    v1/seq2seq/           an encoder-decoder (encoder.onnx + model.onnx)                  + seq2seq.npz
    v1/int8/              v1/plain quantized with int8-dynamic                            + int8.npz

Made with edgeformer at commit 4efe338 (bundle format_version 1) by

    .venv/bin/python tests/golden/make_golden.py tests/golden/v1

Do not remake an existing version's folder: a new format version gets a new folder (v2/, ...),
and the old ones stay as they are.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

TINY = dict(vocab_size=300, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=32, dropout=0.0)
TEXTS = ["the quick brown fox jumps over the lazy dog", "edge devices run small transformers",
         "a lazy dog sleeps", "small models run on the edge", "the fox is quick", "transformers read text"]


def main(root: Path) -> None:
    from edgeformer import runtime
    from edgeformer.export import export_bundle
    from edgeformer.modeling import ModelConfig, Transformer, save
    from edgeformer.modeling.seq2seq import Seq2SeqTransformer
    from edgeformer.modeling.tokenizer import train_tokenizer
    from edgeformer.quantize import quantize_bundle
    from edgeformer.quantize.evaluate import EvalSet

    root.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(TEXTS * 40, vocab_size=300)
    ids = np.array([[5, 17, 99, 3, 250, 8, 41], [7, 260, 12, 0, 0, 0, 0]], dtype=np.int64)
    mask = (np.arange(7)[None] < np.array([[7], [3]])).astype(np.int64)

    # checkpoint: encoder classifier with a tokenizer
    torch.manual_seed(0)
    enc = Transformer(ModelConfig.from_dict(dict(**{**TINY, "vocab_size": tok.vocab_size}, num_labels=3, labels=["a", "b", "c"]))).eval()
    save(enc, root / "checkpoint", tokenizer=tok, overwrite=True)
    with torch.no_grad():
        out = enc(torch.from_numpy(ids), torch.from_numpy(mask))
    np.savez(root / "checkpoint.npz", input_ids=ids, attention_mask=mask,
             **{f"out.{k}": v.numpy() for k, v in out.items()})

    # plain bundle
    export_bundle(root / "checkpoint", root / "plain", overwrite=True)
    got = runtime.load(root / "plain")({"input_ids": ids, "attention_mask": mask})
    np.savez(root / "plain.npz", input_ids=ids, attention_mask=mask, **{f"out.{k}": v for k, v in got.items()})

    # int8-dynamic bundle of the plain one
    quantize_bundle(root / "plain", root / "int8", "int8-dynamic", data=EvalSet(TEXTS), bench_seconds=0.1,
                    smooth_alpha=None, overwrite=True)
    got = runtime.load(root / "int8")({"input_ids": ids, "attention_mask": mask})
    np.savez(root / "int8.npz", input_ids=ids, attention_mask=mask, **{f"out.{k}": v for k, v in got.items()})

    # cached decoder: a prompt step's outputs and a greedy generation
    torch.manual_seed(1)
    dec = Transformer(ModelConfig.from_dict(dict(**TINY, arch="decoder", positional="learned"))).eval()
    save(dec, root / "ckpt-decoder", overwrite=True)
    export_bundle(root / "ckpt-decoder", root / "cached", kv_cache=True, overwrite=True)
    model = runtime.load(root / "cached")
    prompts = [[5, 17, 99, 3], [7, 260]]
    gen = model.generate(prompts, max_new_tokens=8)
    step = {"input_ids": np.array([[5, 17, 99]]), "attention_mask": np.ones((1, 3), np.int64),
            "position_ids": np.arange(3)[None],
            **{n: np.zeros((1, 4, 0, 8), np.float32) for n in model.manifest.cache.past}}
    got = model(step)
    np.savez(root / "cached.npz", prompt_0=np.array(prompts[0]), prompt_1=np.array(prompts[1]),
             token_ids=np.array(gen.token_ids), **{f"step.{k}": np.asarray(v) for k, v in step.items()},
             **{f"out.{k}": v for k, v in got.items()})

    # seq2seq: encoder outputs and a greedy generation
    torch.manual_seed(5)
    s2s = Seq2SeqTransformer(ModelConfig.from_dict({**TINY, "arch": "seq2seq", "positional": "sinusoidal", "norm": "post",
                                            "activation": "relu"})).eval()
    save(s2s, root / "ckpt-seq2seq", overwrite=True)
    export_bundle(root / "ckpt-seq2seq", root / "seq2seq", overwrite=True)
    model = runtime.load(root / "seq2seq")
    sources = [[3, 4, 5, 6, 7, 8, 9], [200, 1]]
    gen = model.generate(sources, max_new_tokens=8)
    src_ids = np.array([[3, 4, 5, 6, 7, 8, 9], [200, 1, 0, 0, 0, 0, 0]], dtype=np.int64)
    src_mask = (src_ids > 0).astype(np.int64)
    src_mask[1, :2] = 1
    # (made with export-era code: runtime.generate.encoder_runner(model); today model.graph("encoder"))
    cross = model.graph("encoder")({"input_ids": src_ids, "attention_mask": src_mask})
    np.savez(root / "seq2seq.npz", input_ids=src_ids, attention_mask=src_mask, token_ids=np.array(gen.token_ids),
             **{f"encoder.{k}": v for k, v in cross.items()})
    import shutil

    for d in ("ckpt-decoder", "ckpt-seq2seq"):  # only their bundles are kept
        shutil.rmtree(root / d)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "v1"))
