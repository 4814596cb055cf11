"""Long-input attention (local, Longformer, Linformer, LSH), reversible blocks and rotary positions.

The blocked kinds are checked against their definition written as full attention with a mask
(the parity reference), then through the real pipeline: export, the parity gate at lengths that
are and are not multiples of the window with padded rows, the graph's score shapes, the runtime
and int8 quantization.
"""

import copy
import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from edgeformer.modeling import ModelConfig, Transformer
from edgeformer.modeling.models.attention import LinformerAttention, LocalAttention, LongformerAttention, global_keep
from edgeformer.modeling.config import ConfigError
from edgeformer.modeling.models.lsh import SELF_PENALTY, LSHAttention
from edgeformer.modeling.models.transformer import SelfAttention
from edgeformer.modeling.models.reversible import reversible_forward
from edgeformer.runtime.errors import EdgeformerError

from .conftest import make_checkpoint
from .test_cli import assert_bad_input, cli

SMALL = dict(vocab_size=300, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_len=64, dropout=0.0)
LENGTHS = [1, 7, 8, 21, 33, 64]  # window 8: below, at and between multiples, and the maximum


def padded_mask(B: int, T: int, seed: int = 0) -> torch.Tensor:
    """(B, T) 0/1: the first row full, the others right-padded to random lengths."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.long)
    for b in range(1, B):
        mask[b, int(torch.randint(1, T + 1, (1,), generator=g)):] = 0
    return mask


def twin(cfg: ModelConfig, module) -> SelfAttention:
    """Full attention holding `module`'s weights: the reference computes the same function with a mask."""
    ref = SelfAttention(cfg.with_fields(attention_kind="full")).eval()
    ref.load_state_dict({k: v for k, v in module.state_dict().items() if k.startswith(("qkv", "proj"))})
    return ref


def window_reference(mask: torch.Tensor, W: int, causal: bool, n_global: int = 0, marked=None) -> torch.Tensor:
    """(B, 1, T, T) keep: keys within W (causal: W before), global rows and columns, each token itself.
    Global tokens: the first n_global positions, or those `marked` (B, T)."""
    T = mask.shape[1]
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    near = (i - j >= 0) & (i - j <= W) if causal else (i - j).abs() <= W
    g = (torch.arange(T) < n_global)[None, :].expand(mask.shape[0], T) if marked is None else marked.bool()  # (B, T)
    near = near | g[:, None, None, :] | g[:, None, :, None]
    return (mask.bool()[:, None, None, :] & near) | (i == j)


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("fields, message", [
    (dict(attention_kind="sparse"), "attention_kind='sparse' is not supported; expected one of: full, local"),
    (dict(attention_kind="local", window=0), "window=0; expected a positive integer"),
    (dict(attention_kind="local", window=65), "window=65 is longer than max_len=64"),
    (dict(attention_kind="linformer", linformer_k=100), "linformer_k=100 is larger than the fixed length max_len=64"),
    (dict(attention_kind="lsh", lsh_buckets=5), "lsh_buckets=5"),
    (dict(attention_kind="lsh", window=24), "a window that divides max_len"),
    (dict(attention_kind="longformer", global_tokens=65), "global_tokens=65 lies beyond max_len=64"),
    (dict(positional="rotary", d_model=30, n_heads=2), "positional=rotary needs an even head dimension"),
    (dict(attention_kind="longformer", arch="decoder"), "attention_kind=longformer is for encoders"),
    (dict(reversible=True, norm="post"), "reversible=true needs norm=pre"),
    (dict(attention_kind="local", arch="seq2seq"), "apply to text encoders and decoders"),
])
def test_settings_that_cannot_work_are_refused(fields, message):
    with pytest.raises(ConfigError, match=None) as e:
        ModelConfig.from_dict({**SMALL, **fields})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_old_config_without_the_fields_is_full_attention():
    old = {k: v for k, v in ModelConfig.from_dict(SMALL).to_dict().items()
           if k not in ("attention_kind", "window", "global_tokens", "linformer_k", "lsh_buckets", "lsh_rounds", "reversible")}
    cfg = ModelConfig.from_dict(old)
    assert (cfg.attention.kind, cfg.reversible, cfg.positional) == ("full", False, "sinusoidal")
    assert isinstance(Transformer(cfg).blocks[0].attn, SelfAttention)


# ---------------------------------------------------------------- the PyTorch modules against their definition


@pytest.mark.parametrize("causal", [False, True])
def test_local_blocks_equal_banded_full_attention(causal):
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict(dict(**SMALL, arch="decoder" if causal else "encoder", attention_kind="local", window=8))
    local = LocalAttention(cfg).eval()
    ref = twin(cfg, local)
    for T in LENGTHS:
        x, mask = torch.randn(3, T, 32), padded_mask(3, T, T)
        got = local(x, mask.bool())
        want = ref(x, window_reference(mask, 8, causal))
        valid = mask.bool()
        assert (got - want)[valid].abs().max() <= 1e-5, T


def test_cached_local_blocks_equal_the_banded_cache_mask():
    """Generation's local attention: new tokens in blocks over the cache, left-padded rows included,
    against full attention over past + new keys with the causal window as a mask."""
    from edgeformer.modeling.models.transformer import LayerCache, cached_keep_mask

    torch.manual_seed(4)
    cfg = ModelConfig.from_dict(dict(**SMALL, arch="decoder", attention_kind="local", window=8))
    local = LocalAttention(cfg).eval()
    ref = twin(cfg, local)
    for past, T in [(0, 1), (0, 21), (0, 64), (13, 1), (40, 9), (5, 3), (30, 16)]:
        S = past + T
        mask = torch.ones(3, S, dtype=torch.long)
        mask[1, :min(4, S - 1)] = 0  # left padding
        mask[2, :S - 1] = 0  # one real token
        x, pk, pv = torch.randn(3, T, 32), torch.randn(3, 2, past, 16), torch.randn(3, 2, past, 16)
        got = local(x, mask.bool(), LayerCache(pk.clone(), pv.clone()))
        q_pos, k_pos = torch.arange(past, S)[:, None], torch.arange(S)[None, :]
        want = ref(x, cached_keep_mask(mask, T) & (k_pos >= q_pos - 8), LayerCache(pk.clone(), pv.clone()))
        real = mask[:, past:].bool()
        assert (got - want)[real].abs().max() <= 1e-5, (past, T)


def test_longformer_equals_window_plus_global_rows_and_columns():
    torch.manual_seed(1)
    cfg = ModelConfig.from_dict(dict(**SMALL, attention_kind="longformer", window=8, global_tokens=3))
    longformer = LongformerAttention(cfg).eval()
    ref = twin(cfg, longformer)
    for T in LENGTHS:
        x, mask = torch.randn(3, T, 32), padded_mask(3, T, T)
        got = longformer(x, global_keep(mask, None, 3))
        want = ref(x, window_reference(mask, 8, False, n_global=3))
        assert (got - want)[mask.bool()].abs().max() <= 1e-5, T


def test_longformer_global_tokens_from_the_input_mask():
    """global_attention_mask picks any tokens of each row (none, fewer than global_tokens, or all of them)."""
    torch.manual_seed(2)
    cfg = ModelConfig.from_dict(dict(**SMALL, attention_kind="longformer", window=8, global_tokens=3))
    longformer = LongformerAttention(cfg).eval()
    ref = twin(cfg, longformer)
    g = torch.Generator().manual_seed(0)
    for T in LENGTHS:
        x, mask = torch.randn(4, T, 32), padded_mask(4, T, T)
        marked = torch.zeros(4, T, dtype=torch.long)
        for row, count in enumerate([1, 3, 0, 2]):
            real = int(mask[row].sum())
            marked[row, torch.randperm(real, generator=g)[:min(count, real)]] = 1
        got = longformer(x, global_keep(mask, marked, 3))
        want = ref(x, window_reference(mask, 8, False, marked=marked))
        assert (got - want)[mask.bool()].abs().max() <= 1e-5, T


def test_marks_past_the_global_slots_stay_ordinary_local_tokens():
    """A raw session can send more marks than global_tokens (the runtime refuses them): the first G are
    global and the rest attend, and are attended, as local tokens, never dropped from every key set."""
    torch.manual_seed(3)
    cfg = ModelConfig.from_dict(dict(**SMALL, attention_kind="longformer", window=4, global_tokens=2))
    longformer = LongformerAttention(cfg).eval()
    x, mask = torch.randn(1, 21, 32), torch.ones(1, 21, dtype=torch.long)
    over, kept = torch.zeros(1, 21, dtype=torch.long), torch.zeros(1, 21, dtype=torch.long)
    over[0, [0, 1, 12]] = 1
    kept[0, [0, 1]] = 1
    got = longformer(x, global_keep(mask, over, 2))
    assert (got - longformer(x, global_keep(mask, kept, 2))).abs().max() <= 1e-6


def test_more_global_tokens_than_the_model_has_room_for_are_refused():
    model = Transformer(ModelConfig.from_dict(dict(**SMALL, attention_kind="longformer", window=8, global_tokens=2))).eval()
    ids, marked = torch.randint(1, 300, (2, 10)), torch.zeros(2, 10, dtype=torch.long)
    marked[1, :3] = 1
    with pytest.raises(ConfigError, match="global_attention_mask marks 3 tokens in row 1; this model attends globally to at most 2"):
        model(ids, global_attention_mask=marked)
    with pytest.raises(ConfigError, match="global_attention_mask is for attention_kind=longformer"):
        Transformer(ModelConfig.from_dict(SMALL)).eval()(ids, global_attention_mask=marked)


def test_linformer_input_is_as_if_zero_padded_to_the_fixed_length():
    torch.manual_seed(2)
    cfg = ModelConfig.from_dict(dict(**SMALL, attention_kind="linformer", linformer_k=16))
    attn = LinformerAttention(cfg).eval()
    x, mask = torch.randn(2, 21, 32), padded_mask(2, 21)
    full_x = torch.cat([x, torch.randn(2, 64 - 21, 32)], dim=1)  # whatever sits in the padding is masked
    full_mask = torch.cat([mask, torch.zeros(2, 64 - 21, dtype=torch.long)], dim=1)
    short, fixed = attn(x, mask.bool()), attn(full_x, full_mask.bool())[:, :21]
    assert (short - fixed)[mask.bool()].abs().max() <= 1e-5


def test_lsh_within_one_chunk_is_shared_qk_attention():
    """With every token in one chunk, LSH attention is full shared-QK attention (the chunk and its
    wrapped-around predecessor are the same keys twice, which leaves each softmax unchanged)."""
    torch.manual_seed(3)
    cfg = ModelConfig.from_dict(dict(**SMALL, attention_kind="lsh", window=32, lsh_buckets=4, lsh_rounds=2))
    lsh = LSHAttention(cfg).eval()
    x, mask = torch.randn(2, 29, 32), padded_mask(2, 29)
    B, T, C = x.shape
    q, _, v = (t.view(B, T, 2, 16).transpose(1, 2) for t in lsh.qkv(x).split(C, dim=2))
    k = F.normalize(q, dim=-1)
    eye = torch.eye(T, dtype=torch.bool)
    bias = torch.where(mask.bool()[:, None, None, :], 0.0, -1e9) - SELF_PENALTY * eye.float()
    want = lsh.proj(F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(B, T, C))
    assert (lsh(x, mask.bool()) - want)[mask.bool()].abs().max() <= 1e-5
    assert "blocks.0.attn.rotations" in Transformer(cfg).state_dict()  # the hash is part of the weights


@pytest.mark.parametrize("kind", ["full", "local"])
def test_rotary_positions_continue_from_the_cache(kind):
    torch.manual_seed(4)
    model = Transformer(ModelConfig.from_dict(dict(**SMALL, arch="decoder", positional="rotary", attention_kind=kind, window=8))).eval()
    ids = torch.randint(1, 300, (2, 30))
    whole = model(ids)["logits"]
    cache = model.empty_cache(2)
    steps = [model(ids[:, :20], cache=cache)["logits"]]
    steps += [model(ids[:, t:t + 1], cache=cache)["logits"] for t in range(20, 30)]
    assert (torch.cat(steps, dim=1) - whole).abs().max() <= 1e-5


def test_rotary_scores_depend_on_relative_position_only():
    from edgeformer.modeling.models.rotary import Rotary, apply_rotary

    rot = Rotary(64, 16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(i, j):
        return (apply_rotary(q, rot(1, torch.tensor([[i]]))) * apply_rotary(k, rot(1, torch.tensor([[j]])))).sum()

    assert abs(score(5, 2) - score(40, 37)) <= 1e-4 and abs(score(5, 2) - score(5, 3)) > 1e-3


@pytest.mark.parametrize("kind", ["full", "local"])
def test_distillation_scores_are_the_ones_forward_attends_with(kind):
    """The scores capture() records for the attention loss are the rotated q.k the block softmaxes."""
    torch.manual_seed(6)
    model = Transformer(ModelConfig.from_dict(dict(**SMALL, positional="rotary", attention_kind=kind, window=64))).eval()
    ids = torch.randint(1, 300, (2, 21))
    with model.capture(attention_scores=True) as seen:
        model(ids)
    block = model.blocks[0]
    x = block.ln1(seen["hidden_states"][0]) if block.pre_norm else seen["hidden_states"][0]
    _, _, v = block.attn.heads(x, model.rope(21, None))
    y = torch.softmax(seen["attention_scores"][0], dim=-1) @ v.transpose(1, 2)  # (B, H, T, hd); window 64 covers all
    want = block.attn(x, torch.ones(2, 21, dtype=torch.bool) if kind == "local" else None, None, model.rope(21, None))
    assert (block.attn.proj(y.transpose(1, 2).reshape(2, 21, 32)) - want).abs().max() <= 1e-5


def test_reversible_recompute_gives_the_gradients_of_plain_backprop():
    torch.manual_seed(5)
    cfg = ModelConfig.from_dict(dict(**SMALL, reversible=True, attention_kind="local", window=8))
    model = Transformer(cfg).eval()
    x, mask = torch.randn(2, 21, 32, requires_grad=True), padded_mask(2, 21).bool()

    def grads(recompute: bool):
        model.zero_grad()
        x.grad = None
        if recompute:
            y = reversible_forward(model.blocks, x, mask)
        else:  # the same function, every activation kept by autograd
            x1 = x2 = x
            for b in model.blocks:
                x1 = x1 + b.attn(b.ln1(x2), mask)
                x2 = x2 + b.ff(b.ln2(x1))
            y = (x1 + x2) / 2
        (y * torch.linspace(-1, 1, 32)).sum().backward()
        return [x.grad.clone()] + [p.grad.clone() for p in model.blocks.parameters()]

    for got, want in zip(grads(True), grads(False)):
        assert (got - want).abs().max() <= 1e-4


# ---------------------------------------------------------------- export, parity gate, runtime, quantization

KINDS = {  # name: (config overrides, export options)
    "local-rotary": (dict(attention_kind="local", window=8, positional="rotary", num_labels=3, labels=["a", "b", "c"]), {}),
    "longformer": (dict(attention_kind="longformer", window=8, global_tokens=2, num_labels=3, labels=["a", "b", "c"]), {}),
    "linformer-reversible": (dict(attention_kind="linformer", linformer_k=16, reversible=True), {}),
    "lsh-decoder": (dict(arch="decoder", attention_kind="lsh", window=8, lsh_buckets=4, lsh_rounds=2,
                         positional="rotary", reversible=True, n_layers=1), {}),
    "local-decoder-cache": (dict(arch="decoder", attention_kind="local", window=8, positional="rotary"), {"kv_cache": True}),
}


@pytest.mark.parametrize("name", list(KINDS))
def test_export_parity_runtime_and_int8(name, tmp_path, tokenizer):
    from edgeformer import runtime
    from edgeformer.export import export_bundle
    from edgeformer.export.long_input import score_shapes
    from edgeformer.quantize import quantize_bundle

    overrides, options = KINDS[name]
    path, model = make_checkpoint(tmp_path / "ckpt", seed=7, tokenizer=tokenizer, **{**SMALL, **overrides,
                                                                                       "vocab_size": tokenizer.vocab_size})
    cases = [(2, 5, 3), (3, 13, 4)] if options.get("kv_cache") else [(1, 1), (2, 7), (3, 21), (4, 33), (2, 64)]
    result = export_bundle(path, tmp_path / "bundle", cases=cases, **options)
    assert result.report.passed and all(o.max_abs <= 1e-4 for o in result.report.worst.values())
    assert any(case.padded for case in result.report.cases)
    cfg = model.cfg
    per_layer = {"longformer": 2, "lsh": cfg.attention.lsh_rounds}.get(cfg.attention.kind, 1)
    assert result.manifest.attention.count == cfg.n_layers * per_layer
    shapes = score_shapes(onnx.load(str(tmp_path / "bundle" / "model.onnx")))
    if not options:  # the blocks, projections and chunks are in the graph: nothing scores seq x seq
        expected = {"local": (8, 24), "longformer": (8, 26), "linformer": ("seq", 16), "lsh": (8, 16)}[cfg.attention.kind]
        assert expected in shapes and ("seq", "seq") not in shapes, shapes
    bundle = runtime.load(tmp_path / "bundle")
    if cfg.attention.kind == "longformer":  # global tokens from the input, by default the first positions
        ids = np.random.default_rng(0).integers(1, cfg.vocab_size, size=(2, 21))
        marked = np.zeros((2, 21), dtype=np.int64)
        marked[:, 0] = 1
        default = bundle({"input_ids": ids})["logits"]
        np.testing.assert_array_equal(default, bundle({"input_ids": ids, "global_attention_mask": marked * 0 + (np.arange(21) < 2)})["logits"])
        marked[1, [5, 17]] = 1, 1  # row 1 marks three: one more than global_tokens
        with pytest.raises(EdgeformerError, match="global_attention_mask marks 3 tokens in row 1; this model attends globally to at most 2"):
            bundle({"input_ids": ids, "global_attention_mask": marked})
        padded = np.ones((2, 21), dtype=np.int64)
        padded[1, 17:] = 0  # the mark on padding is not a global token, and not counted
        bundle({"input_ids": ids, "attention_mask": padded, "global_attention_mask": marked})
        with pytest.raises(EdgeformerError, match="a text batch has no 'pixel_values'"):
            bundle.tokenizer.encode_batch(["a b"], 16).feeds(["input_ids", "pixel_values"])
        marked[1, 0] = 0
        with torch.no_grad():
            want = model(torch.from_numpy(ids), global_attention_mask=torch.from_numpy(marked))["logits"].numpy()
        assert np.abs(bundle({"input_ids": ids, "global_attention_mask": marked})["logits"] - want).max() <= 1e-4
    if cfg.num_labels:
        text = ["the quick brown fox jumps over the lazy dog " * 12]  # longer than max_len: cut, with the usual warning
        with pytest.warns(RuntimeWarning, match="were truncated"):
            assert bundle.classify(text).labels[0] in ("a", "b", "c")
        with pytest.raises(EdgeformerError):
            bundle.classify(text, truncation=False)
    if options.get("kv_cache"):  # a cached decoder: measured by next-token agreement, then generates as before
        from edgeformer.quantize.evaluate import default_eval_texts
        from edgeformer.quantize.generation_eval import GenerationData

        data = GenerationData(texts=default_eval_texts(8).texts, prompts=2, greedy_tokens=8)
        q = quantize_bundle(tmp_path / "bundle", tmp_path / "int8", "int8-dynamic", data=data, bench_seconds=0.05)
        assert q.fidelity.next_token_agreement >= 0.9
        quantized = runtime.load(tmp_path / "int8")
        assert quantized.manifest.quantization.recipe == "int8-dynamic"
        g = quantized.generate([[5, 6, 7]], max_new_tokens=4)
        assert len(g.token_ids[0]) == 4 or g.stop_reasons[0] == "stop"
        return
    q = quantize_bundle(tmp_path / "bundle", tmp_path / "int8", "int8-dynamic")
    assert q.fidelity.mean_cosine > 0.95 and runtime.load(tmp_path / "int8").manifest.quantization.recipe == "int8-dynamic"


def test_lsh_gate_compares_under_the_bundles_hash_and_counts_disagreements(tmp_path, tokenizer):
    """An LSH bundle is gated on its outputs given its own hash decisions, and on how often PyTorch
    decides otherwise: other rotations fail the second check, other attention weights the first."""
    from edgeformer import runtime
    from edgeformer.export import export_bundle
    from edgeformer.export.bundle import gate
    from edgeformer.export.parity import ParityFailure

    overrides = dict(attention_kind="lsh", window=8, lsh_buckets=4, lsh_rounds=2, vocab_size=tokenizer.vocab_size)
    path, model = make_checkpoint(tmp_path / "ckpt", seed=3, tokenizer=tokenizer, **{**SMALL, **overrides})
    result = export_bundle(path, tmp_path / "bundle", cases=[(2, 7), (3, 21), (2, 64)])
    assert result.report.hash_agreement >= 0.999 and result.manifest.parity.passed
    assert result.manifest.parity.extra["hash_agreement"] == result.report.hash_agreement
    bundle = runtime.load(tmp_path / "bundle")

    other_hash = copy.deepcopy(model).eval()
    for block in other_hash.blocks:
        block.attn.rotations.copy_(torch.randn_like(block.attn.rotations))
    report = gate(other_hash, bundle, [(2, 21), (2, 64)])
    assert report.hash_agreement < 0.9 and max(o.max_abs for o in report.worst.values()) <= 1e-4 and not report.passed
    assert "LSH hash agrees with PyTorch's on" in str(ParityFailure(report, "b"))

    other_weights = copy.deepcopy(model).eval()
    with torch.no_grad():
        other_weights.blocks[0].attn.proj.weight.add_(0.01 * torch.randn_like(other_weights.blocks[0].attn.proj.weight))
    report = gate(other_weights, bundle, [(2, 21)])
    assert max(o.max_abs for o in report.worst.values()) > 1e-3 and not report.passed


def test_full_attention_disguised_as_local_is_refused(tmp_path):
    from edgeformer.export.long_input import check_subquadratic
    from edgeformer.export.onnx import ExportError
    from edgeformer.export.kinds import export_onnx

    export_onnx(Transformer(ModelConfig.from_dict(SMALL)).eval(), tmp_path / "m.onnx")  # full attention: seq x seq scores
    with pytest.raises(ExportError, match="scores seq x seq"):
        check_subquadratic(onnx.load(str(tmp_path / "m.onnx")))


# ---------------------------------------------------------------- the CLI


def test_train_and_distill_from_the_cli(tmp_path):
    rows = [{"text": f"the {w} number {i} is {c}", "label": c} for i in range(4)
            for w in ("sky", "sea", "car", "cat", "hat") for c in ("red", "blue")]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cli("train", "--arch", "encoder", "--data", tmp_path / "data.jsonl", "--epochs", "1", "--vocab-size", "300",
        "--max-len", "48", "--seq-len", "48", "--out", tmp_path / "teacher")
    cli("distill", "--teacher", tmp_path / "teacher", "--student", "tiny", "--layers", "1", "--data", tmp_path / "data.jsonl",
        "--epochs", "1", "--attention-kind", "lsh", "--window", "16", "--lsh-buckets", "4", "--lsh-rounds", "2",
        "--reversible", "--positional", "rotary", "--no-report", "--out", tmp_path / "student")
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert (config["attention_kind"], config["lsh_rounds"], config["reversible"], config["positional"], config["max_len"]) \
        == ("lsh", 2, True, "rotary", 48)
    assert_bad_input(cli("train", "--arch", "encoder", "--attention-kind", "local", "--window", "600",
                         "--out", tmp_path / "x", ok=False), "window=600 is longer than max_len=256")  # stdlib-topics: small
    assert not (tmp_path / "x").exists()
