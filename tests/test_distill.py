"""Distillation for real: it beats training from scratch, each loss does its job, bad input stops it early."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgeformer.modeling import ModelConfig, Transformer, load
from edgeformer.modeling.checkpoint import load_tokenizer
from edgeformer.modeling.training.data import CorpusData, load_task
from edgeformer.modeling.distillation import distill_checkpoint
from edgeformer.modeling.distillation.text import DISTILLATION_FILE, DistillConfig, TextData, distill, embedding_cosines
from edgeformer.modeling.distillation.losses import soft_loss
from edgeformer.modeling.distillation.student import student_config
from edgeformer.modeling.models.transformer import attention_keep_mask
from edgeformer.modeling.training.train import TrainConfig, train, train_checkpoint
from edgeformer.runtime.artifacts import sha256_file

from .conftest import TINY, cli_in_process

EDGEFORMER = str(Path(sys.executable).with_name("edgeformer"))


def cli(*args):
    return subprocess.run([EDGEFORMER, *map(str, args)], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def topics_teacher(tmp_path_factory):
    """A tiny (2-layer) classifier trained on the built-in task: the teacher."""
    path = tmp_path_factory.mktemp("teacher") / "ckpt"
    train_checkpoint(path, "encoder", "tiny", task="stdlib-topics", tc=TrainConfig(epochs=3, seq_len=64), vocab_size=512,
                     progress=False)
    return path


@pytest.mark.slow
def test_distillation_beats_training_from_scratch(topics_teacher, tmp_path):
    """Same 1-layer student, same data, same single epoch, same seed: distilled vs trained alone."""
    budget = TrainConfig(epochs=1, seed=0)
    distilled = distill_checkpoint(topics_teacher, "tiny", tmp_path / "student", layers=1, tc=budget, progress=False)

    teacher = load(topics_teacher)
    tok = load_tokenizer(topics_teacher)
    torch.manual_seed(budget.seed)
    scratch = Transformer(student_config(teacher.cfg, "tiny", layers=1))
    alone = train(scratch, load_task("stdlib-topics", "encoder"), tok, budget, progress=False).final["eval_accuracy"]

    print(f"teacher {distilled.teacher_metric:.3f}, distilled {distilled.student_metric:.3f}, from scratch {alone:.3f}")
    assert distilled.init_layers == [0]  # half the teacher's layers, started from its first block
    assert distilled.student_metric >= alone + 0.05, (distilled.student_metric, alone)
    assert distilled.retention >= 0.9, distilled.to_json()

    record = json.loads((tmp_path / "student" / DISTILLATION_FILE).read_text())
    assert record["teacher"]["sha256"] == sha256_file(topics_teacher / "model.safetensors")
    assert record["teacher"]["path"] == str(topics_teacher.resolve())
    assert record["recipe"]["temperature"] == 2.0 and record["recipe"]["init_layers"] == [0]
    assert record["result"]["student_metric"] == distilled.student_metric
    assert load(tmp_path / "student").cfg.n_layers == 1
    assert (tmp_path / "student" / "tokenizer.json").read_text() == (topics_teacher / "tokenizer.json").read_text()


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_capture_returns_hidden_states_and_attention_scores(arch, norm):
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_dict({**TINY, "arch": arch, "norm": norm})).eval()
    x = torch.randint(0, TINY["vocab_size"], (3, 9))
    m = torch.ones_like(x)
    m[1, 6:] = 0
    plain = model(x, m)
    with model.capture(attention_scores=True) as seen:
        out = model(x, m)
    assert all(torch.equal(plain[k], out[k]) for k in plain)  # capturing changes nothing
    assert len(seen["hidden_states"]) == TINY["n_layers"] + 1 and len(seen["attention_scores"]) == TINY["n_layers"]
    if arch == "encoder":  # the last block's output, through the final norm, is last_hidden_state
        torch.testing.assert_close(model.ln_f(seen["hidden_states"][-1]), out["last_hidden_state"], atol=1e-6, rtol=0)
    # The scores, masked and softmaxed, reproduce what the fused attention computed.
    block, x0 = model.blocks[0], seen["hidden_states"][0]
    h = block.ln1(x0) if block.pre_norm else x0
    keep = attention_keep_mask(m, arch == "decoder")
    probs = seen["attention_scores"][0].masked_fill(~keep, float("-inf")).softmax(-1)  # (B, H, T, T)
    B, T, C = h.shape
    v = block.attn.qkv(h).split(C, dim=2)[2].view(B, T, TINY["n_heads"], -1).transpose(1, 2)
    manual = block.attn.proj((probs @ v).transpose(1, 2).reshape(B, T, C))
    torch.testing.assert_close(manual, block.attn(h, keep), atol=1e-5, rtol=0)
    with torch.no_grad():
        model(x, m)
    assert len(seen["hidden_states"]) == TINY["n_layers"] + 1  # hooks are gone after the block


def test_language_model_student_moves_toward_its_teacher(tokenizer):
    """Soft targets plus hidden-state (through a learned projection, widths differ) and attention losses."""
    torch.manual_seed(0)
    vocab = tokenizer.vocab_size
    teacher = Transformer(ModelConfig.from_dict({**TINY, "arch": "decoder", "positional": "learned", "vocab_size": vocab})).eval()
    student = Transformer(ModelConfig.from_dict({**TINY, "arch": "decoder", "positional": "learned", "vocab_size": vocab,
                                         "d_model": 16, "d_ff": 32, "n_layers": 1, "n_heads": 2}))
    with torch.no_grad():  # a random teacher is nearly uniform; sharpen it so there is something to learn
        teacher.embed.tok.weight.mul_(40.0)
    text = " ".join(["the quick brown fox jumps over the lazy dog", "edge devices run small transformers"] * 120)
    data = CorpusData(text[: int(len(text) * 0.9)], text[int(len(text) * 0.9):])
    ids = torch.tensor(tokenizer.encode(data.eval)[:33])[None]

    def kl():
        with torch.no_grad():
            return soft_loss(student.eval()(ids)["logits"], teacher(ids)["logits"], 1.0).item()

    before = kl()
    dc = DistillConfig(hard_weight=0.0, hidden=True, attention=True, layer_map=[(1, 2)])
    result = distill(teacher, student, data, tokenizer, dc, TrainConfig(epochs=3, steps_per_epoch=20, batch_size=8,
                                                                            seq_len=32, lr=1e-2), progress=False)
    after = kl()
    assert after < 0.7 * before, (before, after)
    for key in ("train_soft", "train_hidden"):
        assert result.history[-1][key] < result.history[0][key], result.history
    assert 0 < result.history[-1]["train_attention"] < float("inf")  # the attention term took part in every step
    assert result.metric == "perplexity" and result.teacher_metric > 0


def test_embedding_student_learns_the_teachers_vectors(tokenizer):
    torch.manual_seed(0)
    teacher = Transformer(ModelConfig.from_dict({**TINY, "vocab_size": tokenizer.vocab_size, "n_layers": 4})).eval()
    student = Transformer(ModelConfig.from_dict({**TINY, "vocab_size": tokenizer.vocab_size, "n_layers": 2}))
    words = "the quick brown fox jumps over the lazy dog while edge devices run small transformers".split()
    texts = [" ".join(words[i % 7: i % 7 + 3 + i % 5]) + f" {words[i % 11]}" for i in range(200)]
    data = TextData(texts[:160], texts[160:])
    held = [tokenizer.encode(t) for t in data.eval]
    before = embedding_cosines(student, teacher, held, 0).mean().item()
    result = distill(teacher, student, data, tokenizer, DistillConfig(embedding_loss="cosine"),
                     TrainConfig(epochs=3, batch_size=16, lr=3e-3), progress=False)
    assert result.metric == "cosine to teacher" and result.teacher_metric == pytest.approx(1.0, abs=1e-5)
    assert result.student_metric > before + 0.05 and result.student_metric > 0.9, (before, result.history)


# ---------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def labelled_file(tmp_path_factory):
    """Text for the conftest tiny classifier (labels a, b, c)."""
    path = tmp_path_factory.mktemp("data") / "abc.tsv"
    words = "the quick brown fox jumps over the lazy dog edge devices run small transformers".split()
    path.write_text("".join(f"{'abc'[i % 3]}\t{' '.join(words[i % 9:i % 9 + 4])} {i}\n" for i in range(90)))
    return path


def test_cli_distills_and_reports(topics_teacher, tmp_path):
    proc = cli("distill", "--teacher", topics_teacher, "--student", "tiny", "--layers", "1", "--out", tmp_path / "s",
               "--epochs", "1", "--bench-seconds", "0.3", "--bundles", tmp_path / "b", "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert "distillation report" in proc.stdout and "retention" in proc.stdout
    summary = json.loads((tmp_path / "r.json").read_text())
    rep = summary["report"]
    t, s = rep["models"]["teacher"], rep["models"]["student"]
    assert s["parameters"] < t["parameters"] and s["bundle_mb"] < t["bundle_mb"]
    assert all(v > 0 for m in (t, s) for v in m["latency_ms"].values()) and set(t["latency_ms"]) == {"1", "8"}
    assert max(t["parity_max_abs"], s["parity_max_abs"]) <= 1e-4
    assert s["accuracy"] == summary["result"]["student_metric"] and rep["retention"] == pytest.approx(s["accuracy"] / t["accuracy"])
    assert (tmp_path / "b" / "student" / "manifest.json").is_file()


def _bad(proc, message, out):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 1 and message in lines[0], proc.stderr
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_bad_inputs_stop_before_training(encoder_ckpt, decoder_ckpt, labelled_file, tmp_path):
    out = tmp_path / "student"
    base = ["distill", "--teacher", encoder_ckpt, "--out", out, "--no-report"]
    cfg = load(encoder_ckpt).cfg.to_dict()
    (tmp_path / "vocab.json").write_text(json.dumps({**cfg, "vocab_size": cfg["vocab_size"] + 7}))
    _bad(cli_in_process(*base, "--student", tmp_path / "vocab.json", "--data", labelled_file), "differs from the teacher's", out)
    (tmp_path / "task.json").write_text(json.dumps({**cfg, "num_labels": 0, "labels": None}))
    _bad(cli_in_process(*base, "--student", tmp_path / "task.json", "--data", labelled_file), "expected the same task", out)
    _bad(cli_in_process(*base, "--student", "tiny", "--layers", "1", "--hidden-loss", "--layer-map", "1:2,2:3", "--data", labelled_file),
         "names student layer 2", out)
    _bad(cli_in_process(*base, "--student", "tiny", "--hidden-loss", "--layer-map", "1:9", "--data", labelled_file),
         "names teacher layer 9", out)
    (tmp_path / "empty.tsv").write_text("")
    _bad(cli_in_process(*base, "--student", "tiny", "--data", tmp_path / "empty.tsv"), "is empty", out)
    (tmp_path / "other.tsv").write_text(labelled_file.read_text().replace("a\t", "z\t"))
    _bad(cli_in_process(*base, "--student", "tiny", "--data", tmp_path / "other.tsv"), "are not the teacher's", out)
    _bad(cli_in_process("distill", "--teacher", decoder_ckpt, "--student", "tiny", "--out", out, "--task", "pydoc-lm"),
         "has no tokenizer.json", out)
    _bad(cli_in_process(*base, "--student", "huge", "--data", labelled_file), "unknown student 'huge'", out)


def test_alternating_timing_times_each_side_in_its_own_blocks():
    """The report's timing (runtime.bench.time_alternating): blocks alternate, each side's samples are pooled."""
    from edgeformer.runtime.bench import time_alternating

    calls = []
    timed = time_alternating({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3,
                             min_seconds=0.0, warmup=1, min_runs=2)
    assert calls == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
    assert timed["a"].runs == timed["b"].runs == 6
