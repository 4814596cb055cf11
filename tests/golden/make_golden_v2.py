"""How the v2 golden artifacts were made (checkpoint format 2, bundle format 2, vectors format 1). Tests
never run this script; tests/test_formats.py reads what it wrote.

    checkpoint/     an encoder classifier with a tokenizer (checkpoint format 2)          + checkpoint.npz
    plain/          that checkpoint exported (bundle format 2, kind plain, vectors.json)   + plain.npz
    int8/           plain/ quantized with int8-dynamic                                     + int8.npz
    int4/           plain/ quantized with int4 (MatMulNBits, accuracy level 4)             + int4.npz
    cached/         a decoder exported with --kv-cache (kind cached-decoder)               + cached.npz
    seq2seq/        an encoder-decoder (encoder.onnx + model.onnx, kind seq2seq)           + seq2seq.npz
    vit-checkpoint/ a ViT image classifier (checkpoint format 2)
    vit/            that checkpoint exported                                               + vit.npz
    speech-checkpoint/  a Conformer (CTC speech recognition, checkpoint format 2)
    speech/         that checkpoint exported                                               + speech.npz
    android/        plain/ deployed for android (model.ort)                                + android.npz
    web/            plain/ deployed for the web, checked in headless Chromium              + web.npz
    made.json       the commit and tools that made them, and what was left out

The web folder keeps every file but onnxruntime-web's WASM binary (ort-wasm-simd-threaded.wasm,
about 15 MB, an npm file the folder copies as it is): its manifest still lists it, and the test checks
every other file against the manifest. Each .npz holds recorded inputs and outputs (numpy arrays only,
never pickle). The models are random (seeded), as small as the formats allow; the speech bundle is the
largest (2.5 MB of the 5.4 MB): every speech graph holds the front end's fixed float64 DFT basis (1.6 MB),
and its vectors.json the padded waveforms it was asked about.

Made at commit 6559190 (made.json) by

    .venv/bin/python tests/golden/make_golden_v2.py tests/golden/v2

run from a snapshot of one commit, so that no uncommitted edit of a work tree takes part (the snapshot's
folders as the edgeformer package, web/node_modules from the work tree's `npm ci`):

    git archive COMMIT | tar -x -C SNAP && mkdir SNAP/pkg/edgeformer && touch SNAP/pkg/edgeformer/__init__.py
    for d in runtime modeling export quantize deploy debug pipeline tasks cli; do
        ln -s SNAP/$d SNAP/pkg/edgeformer/$d; done
    ln -s $PWD/web/node_modules SNAP/web/node_modules
    PYTHONPATH=SNAP/pkg .venv/bin/python SNAP/tests/golden/make_golden_v2.py tests/golden/v2 COMMIT

Do not remake an existing version's folder: a new format version gets a new folder (v3/, ...).
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

# d_model 32: int4's blocks are 32 weights; two layers, so that per-layer names (a decoder's past.0, past.1) show.
TINY = dict(vocab_size=64, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_len=32, dropout=0.0)
TEXTS = ["the quick brown fox jumps over the lazy dog", "edge devices run small transformers",
         "a lazy dog sleeps", "small models run on the edge", "the fox is quick", "transformers read text"]
LEFT_OUT = {"web/ort-wasm-simd-threaded.wasm": "onnxruntime-web's WASM binary (npm), about 15 MB"}
IDS = np.array([[5, 17, 99, 3, 250, 8, 41], [7, 260, 12, 0, 0, 0, 0]], dtype=np.int64)  # the text model's ids
MASK = (np.arange(7)[None] < np.array([[7], [3]])).astype(np.int64)


def save_npz(path: Path, **arrays) -> None:
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})


def outputs(prefix: str, out: dict) -> dict:
    return {f"{prefix}.{k}": (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in out.items()}


def text_artifacts(root: Path) -> None:
    """checkpoint/, plain/, int8/, int4/: an encoder classifier with a tokenizer, exported and quantized."""
    from edgeformer import runtime
    from edgeformer.export import export_bundle
    from edgeformer.modeling import ModelConfig, Transformer, save
    from edgeformer.modeling.tokenizer import train_tokenizer
    from edgeformer.quantize import quantize_bundle
    from edgeformer.quantize.evaluate import EvalSet

    tok = train_tokenizer(TEXTS * 40, vocab_size=300)
    torch.manual_seed(0)
    enc = Transformer(ModelConfig.from_dict(dict(**{**TINY, "vocab_size": tok.vocab_size}, num_labels=3, labels=["a", "b", "c"]))).eval()
    save(enc, root / "checkpoint", tokenizer=tok)
    with torch.no_grad():
        out = enc(torch.from_numpy(IDS), torch.from_numpy(MASK))
    save_npz(root / "checkpoint.npz", input_ids=IDS, attention_mask=MASK, **outputs("out", out))

    export_bundle(root / "checkpoint", root / "plain")
    for recipe, name in (("int8-dynamic", "int8"), ("int4", "int4")):
        quantize_bundle(root / "plain", root / name, recipe, data=EvalSet(TEXTS), bench_seconds=0.1, smooth_alpha=None)
    for name in ("plain", "int8", "int4"):
        model = runtime.load(root / name)
        got = model({"input_ids": IDS, "attention_mask": MASK})
        classified = model.classify(TEXTS[:3])
        save_npz(root / f"{name}.npz", input_ids=IDS, attention_mask=MASK, texts=np.array(TEXTS[:3]),
                 labels=np.array(classified.labels), probabilities=classified.probabilities, **outputs("out", got))


def cached_decoder(root: Path, work: Path) -> None:
    """cached/: a decoder's prompt step and a greedy generation."""
    from edgeformer import runtime
    from edgeformer.export import export_bundle
    from edgeformer.modeling import ModelConfig, Transformer, save

    torch.manual_seed(1)
    dec = Transformer(ModelConfig.from_dict(dict(**TINY, arch="decoder", positional="learned"))).eval()
    save(dec, work / "ckpt-decoder")
    export_bundle(work / "ckpt-decoder", root / "cached", kv_cache=True)
    model = runtime.load(root / "cached")
    prompts = [[5, 17, 59, 3], [7, 60]]
    gen = model.generate(prompts, max_new_tokens=8)
    heads, head_dim = TINY["n_heads"], TINY["d_model"] // TINY["n_heads"]
    step = {"input_ids": np.array([[5, 17, 59]]), "attention_mask": np.ones((1, 3), np.int64),
            "position_ids": np.arange(3)[None],
            **{n: np.zeros((1, heads, 0, head_dim), np.float32) for n in model.manifest.cache.past}}
    save_npz(root / "cached.npz", prompt_0=prompts[0], prompt_1=prompts[1], token_ids=gen.token_ids,
             **{f"step.{k}": v for k, v in step.items()}, **outputs("out", model(step)))


def seq2seq(root: Path, work: Path) -> None:
    """seq2seq/: the encoder graph's outputs on a padded batch and a greedy generation."""
    from edgeformer import runtime
    from edgeformer.export import export_bundle
    from edgeformer.modeling import ModelConfig, save
    from edgeformer.modeling.seq2seq import Seq2SeqTransformer

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


def vision(root: Path) -> None:
    """vit-checkpoint/, vit/: a ViT classifier of 8x8 one-channel images in 4x4 patches."""
    from edgeformer import runtime
    from edgeformer.export import export_bundle
    from edgeformer.modeling import ModelConfig, Transformer, save

    torch.manual_seed(2)
    cfg = ModelConfig.from_dict(dict(d_model=32, n_heads=2, n_layers=2, d_ff=64, dropout=0.0, vocab_size=1, image_size=8,
                      patch_size=4, num_channels=1, positional="learned", max_len=5, pooling="cls", num_labels=3,
                      labels=["circle", "cross", "line"]))
    vit = Transformer(cfg).eval()
    save(vit, root / "vit-checkpoint")
    export_bundle(root / "vit-checkpoint", root / "vit")
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)  # HWC
    pixels = rng.uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32)
    model = runtime.load(root / "vit")
    classified = model.classify_images(images, layout="HWC")
    with torch.no_grad():
        eager = vit(pixel_values=torch.from_numpy(pixels))
    save_npz(root / "vit.npz", images=images, labels=np.array(classified.labels), probabilities=classified.probabilities,
             pixel_values=pixels, **outputs("out", model({"pixel_values": pixels})), **outputs("checkpoint", eager))


def speech(root: Path) -> None:
    """speech-checkpoint/, speech/: a Conformer with non-trivial BatchNorm statistics, on padded waveforms."""
    from edgeformer import runtime
    from edgeformer.export import export_bundle
    from edgeformer.modeling import save
    from edgeformer.modeling.conformer import Conformer
    from edgeformer.modeling.speech import conformer_config

    torch.manual_seed(3)
    conformer = Conformer(conformer_config("tiny", d_model=32, n_heads=2, n_layers=2, d_ff=64, conv_kernel=5,
                                           n_mels=16, dropout=0.0)).eval()
    for block in conformer.blocks:
        block.conv.batch_norm.running_mean.normal_(0, 0.5)
        block.conv.batch_norm.running_var.uniform_(0.5, 2.0)
    save(conformer, root / "speech-checkpoint")
    export_bundle(root / "speech-checkpoint", root / "speech")
    rng = np.random.default_rng(3)
    t = np.arange(4000) / 16000
    waves = np.zeros((2, 4000), np.float32)
    waves[0] = 0.4 * np.sin(2 * np.pi * 941 * t) + 0.01 * rng.standard_normal(4000)
    waves[1, :2500] = 0.2 * rng.standard_normal(2500)
    lengths = np.array([4000, 2500], dtype=np.int64)
    model = runtime.load(root / "speech")
    texts = model.transcribe([waves[0], waves[1, :2500]])
    with torch.no_grad():
        eager = conformer(torch.from_numpy(waves), torch.from_numpy(lengths))
    save_npz(root / "speech.npz", waveforms=waves, lengths=lengths, texts=np.array(texts),
             **outputs("out", model({"waveforms": waves, "lengths": lengths})), **outputs("checkpoint", eager))


def deployments(root: Path) -> None:
    """android/, web/: plain/ deployed; web checked in Chromium, then its WASM binary left out (LEFT_OUT)."""
    from edgeformer import runtime
    from edgeformer.deploy import DeployOptions, deploy

    deploy(root / "plain", "android", root / "android")
    deploy(root / "plain", "web", root / "web", DeployOptions(check=True), progress=print)
    for rel in LEFT_OUT:
        (root / rel).unlink()
    for name in ("android",):
        got = runtime.load(root / name)({"input_ids": IDS, "attention_mask": MASK})
        save_npz(root / f"{name}.npz", input_ids=IDS, attention_mask=MASK, **outputs("out", got))
    model = runtime.load(root / "web", verify=False)  # its WASM binary is left out
    save_npz(root / "web.npz", input_ids=IDS, attention_mask=MASK,
             **outputs("out", model({"input_ids": IDS, "attention_mask": MASK})))


def made_record(commit: str | None) -> dict:
    """Which commit made the artifacts (`commit`: a snapshot's; else this work tree's HEAD and its
    uncommitted files), with the tools and the CPU."""
    from edgeformer.runtime.artifacts import package_versions
    from edgeformer.runtime.cpu import describe

    source = {"commit": commit, "snapshot": True}
    if commit is None:
        here = Path(__file__).resolve().parent
        git = lambda *a: subprocess.run(["git", *a], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        source = {"commit": git("rev-parse", "HEAD"),
                  "uncommitted": [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]}
    return {**source, "command": "python tests/golden/make_golden_v2.py tests/golden/v2 [COMMIT]",
            "tools": package_versions(("torch", "onnx", "onnxruntime", "numpy", "tokenizers")),
            "python": platform.python_version(), "host": describe(), "left_out": LEFT_OUT}


def main(root: Path, commit: str | None = None) -> None:
    from edgeformer.runtime.artifacts import atomic_directory

    record = made_record(commit)
    with atomic_directory(root) as tmp:  # refuses an existing folder: a version's goldens are made once
        work = tmp / "work"
        text_artifacts(tmp)
        cached_decoder(tmp, work)
        seq2seq(tmp, work)
        vision(tmp)
        speech(tmp)
        deployments(tmp)
        shutil.rmtree(work)  # the decoder and seq2seq checkpoints: only their bundles are kept
        (tmp / "made.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "v2"), *sys.argv[2:3])
