"""int4 keeps a GGUF's own blocks: Q4_0, Q4_1 and Q8_0 recovered exactly from float32 weights (made by the
gguf package's own quantizer) and stored as MatMulNBits, so the int4 bundle computes what float32 does."""

import collections
import json

import numpy as np
import onnx
import pytest
import torch
from gguf import GGMLQuantizationType as Q, quants

from edgeformer import runtime
from edgeformer.export import export_bundle
from edgeformer.modeling import ModelConfig, Transformer, save
from edgeformer.quantize import RecipeOptions, quantize_bundle
from edgeformer.quantize.generation_eval import GenerationData
from edgeformer.quantize.evaluate import default_eval_texts
from edgeformer.quantize.source_blocks import recover_blocks

from .conftest import TINY


def gguf_round_trip(x: np.ndarray, kind: Q) -> np.ndarray:
    return quants.dequantize(quants.quantize(np.ascontiguousarray(x, dtype=np.float32), kind), kind).astype(np.float32)


@pytest.mark.parametrize("kind", [Q.Q4_0, Q.Q4_1, Q.Q8_0])
def test_every_block_format_is_recovered_value_for_value(kind):
    w = gguf_round_trip(np.random.default_rng(int(kind)).standard_normal((24, 96)) * 0.05, kind)
    blocks = recover_blocks(w)
    assert blocks is not None and blocks.kind == kind.name.lower()
    q = blocks.q.astype(np.float32)
    d = blocks.scales[..., None]
    rebuilt = {"q4_1": lambda: d * (q - blocks.zero_points[..., None]) + blocks.offsets[..., None], "q4_0": lambda: d * (q - 8),
               "q8_0": lambda: d * (q - 128)}[blocks.kind]()
    np.testing.assert_allclose(rebuilt.reshape(w.shape), w, rtol=0, atol=1e-7)
    assert blocks.q.max() <= (255 if kind == Q.Q8_0 else 15)
    if kind == Q.Q4_1:  # the integer zero point leaves less than half a step to the offset
        assert blocks.zero_points.max() <= 15 and (np.abs(blocks.offsets) <= blocks.scales / 2 + 1e-7).mean() > 0.5


def test_weights_off_every_grid_keep_the_recipes_blocks():
    w = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    assert recover_blocks(w) is None
    snapped = gguf_round_trip(w, Q.Q4_1)
    snapped[3, 17] = np.nextafter(snapped[3, 17], np.float32(1))  # one value one float step off its grid
    assert recover_blocks(snapped) is None
    assert recover_blocks(gguf_round_trip(w, Q.Q4_1)[:, :48]) is None  # K not a multiple of 32


def gguf_like_checkpoint(path, snap: bool, tokenizer):
    """A tied decoder whose linear weights went through Q4_1 and whose embedding through Q8_0, as a GGUF import has them."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_dict({**TINY, "arch": "decoder", "positional": "learned", "d_model": 64,
                                               "d_ff": 128, "vocab_size": tokenizer.vocab_size})).eval()
    if snap:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.ndim == 2 and "embed.pos" not in name:
                    kind = Q.Q8_0 if "embed.tok" in name else Q.Q4_1
                    p.copy_(torch.from_numpy(gguf_round_trip(p.numpy(), kind)))
    save(model, path, tokenizer=tokenizer)
    return path


@pytest.mark.parametrize("snap", [True, False])
def test_int4_of_a_gguf_shaped_decoder_computes_what_float32_does(snap, tokenizer, tmp_path):
    ckpt = gguf_like_checkpoint(tmp_path / "ckpt", snap, tokenizer)
    bundle = export_bundle(ckpt, tmp_path / "f32", kv_cache=True).path
    data = GenerationData(texts=default_eval_texts(6).texts, prompts=2, greedy_tokens=8)
    quantize_bundle(bundle, tmp_path / "int4", "int4", options=RecipeOptions(accuracy_level=0), data=data,
                    bench_seconds=0.05)
    cover = json.loads((tmp_path / "int4" / "manifest.json").read_text())["quantization"]["coverage"]["model.onnx"]
    graph = onnx.load(str(tmp_path / "int4" / "model.onnx")).graph
    ops_float = collections.Counter(n.op_type for n in onnx.load(str(bundle / "model.onnx")).graph.node)
    bits = sorted(next(a.i for a in n.attribute if a.name == "bits") for n in graph.node if n.op_type == "MatMulNBits")
    a, b = runtime.load(bundle), runtime.load(tmp_path / "int4")
    prompts = [[5, 9, 17, 3, 60, 2], [7, 7, 1]]
    fa = a.generate(prompts, max_new_tokens=8, return_logits=True)
    fb = b.generate(prompts, max_new_tokens=8, return_logits=True)
    worst = max(float(np.abs(x - y).max()) for x, y in zip(fa.logits, fb.logits))
    layers = TINY["n_layers"] * 4  # qkv, proj, fc1, fc2
    if snap:
        assert cover["source_blocks"] == {"q4_1": layers, "q8_0": 1}
        assert cover["lm_head"] == "int8, the source's Q8_0 blocks" and cover["token_embedding"] == "int8, shared with the LM head"
        assert bits == [4] * layers + [8]
        ops = collections.Counter(n.op_type for n in graph.node)
        assert ops["Add"] - ops_float["Add"] == layers  # each Q4_1 matrix's offset
        # one block sum per distinct input (attention in, attention out, FFN in, FFN hidden) and one offset per matrix
        assert ops["MatMul"] == TINY["n_layers"] * 4 + layers
        (gather,) = [n for n in graph.node if n.op_type == "GatherBlockQuantized"]
        producers = {o: n for n in graph.node for o in n.output}
        assert next(a.i for a in gather.attribute if a.name == "bits") == 8
        assert producers[gather.input[0]].op_type == "Reshape"  # the head's bytes, stored once
        assert worst < 1e-4, worst  # the same weights, to a float rounding
        assert fa.token_ids == fb.token_ids
    else:  # random weights: the recipe's own symmetric 4-bit blocks, and their error
        assert "source_blocks" not in cover and bits == [4] * (layers + 1)
        assert worst > 1e-3, worst
