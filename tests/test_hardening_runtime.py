"""The runtime's surfaces attacked as an attacker or a careless user would: bundles (symlink loops,
loosened manifests, graphs rewritten with their hashes), signing inputs, image and audio files and
arrays. Every case is refused with one EdgeformerError line in edgeformer's words (the CLI: exit 2,
one stderr line), never a traceback or a library's raw text."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeformer import runtime
from edgeformer.cli.main import cli
from edgeformer.runtime import BundleError, EdgeformerError, InputError
from edgeformer.runtime.artifacts import sha256_file

GOLDEN = Path(__file__).parent / "golden" / "v1"
RAW_LIBRARY_TEXT = ("[ONNXRuntimeError]", "INVALID_PROTOBUF", "INVALID_GRAPH", "onnxruntime::", ".cc:", "Traceback",
                    "Symlink loop", "cryptography.io", "list indices", "object is not", "DecompressionBomb")


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text, text
    assert not any(raw in text for raw in RAW_LIBRARY_TEXT), text
    return text


def refused(call, error: type[BaseException] = EdgeformerError, match: str = "") -> str:
    with pytest.raises(error, match=match) as caught:
        call()
    return one_line(caught.value)


def cli_refuses(args: list[str], match: str) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], result.stderr
    return lines[0]


@pytest.fixture
def plain_copy(tmp_path):
    return Path(shutil.copytree(GOLDEN / "plain", tmp_path / "b"))


def edit_manifest(b: Path, change) -> None:
    m = json.loads((b / "manifest.json").read_text())
    change(m)
    (b / "manifest.json").write_text(json.dumps(m))


def rehash(b: Path, name: str) -> None:
    """Record `name`'s new bytes in the manifest, as an attacker who rewrites the hashes would."""
    p = b / name
    edit_manifest(b, lambda m: m["files"][name].update(sha256=sha256_file(p), bytes=p.stat().st_size))


# ---------------------------------------------------------------------------------------------- bundles


def test_a_graph_that_is_a_symlink_loop_is_refused_in_one_line(plain_copy):
    (plain_copy / "model.onnx").unlink()
    os.symlink("model.onnx", plain_copy / "model.onnx")
    text = refused(lambda: runtime.load(plain_copy), BundleError, "model.onnx is a symlink loop")
    assert "expected a file inside the folder" in text
    cli_refuses(["run", plain_copy, "--ids", "1 2 3"], "is a symlink loop")


def test_a_two_link_loop_and_a_looping_manifest_are_refused(plain_copy):
    (plain_copy / "tokenizer.json").unlink()
    os.symlink("other.json", plain_copy / "tokenizer.json")
    os.symlink("tokenizer.json", plain_copy / "other.json")
    refused(lambda: runtime.load(plain_copy), BundleError, "tokenizer.json is a symlink loop")
    (plain_copy / "manifest.json").unlink()
    os.symlink("manifest.json", plain_copy / "manifest.json")
    refused(lambda: runtime.load(plain_copy), BundleError, "manifest.json is a symlink loop")


def test_a_mask_of_5_is_refused_though_the_manifest_was_loosened_to_allow_it(plain_copy):
    edit_manifest(plain_copy, lambda m: m["inputs"][1].update(max=5))
    model = runtime.load(plain_copy)  # the manifest's own bound is data: it loads
    assert model.inputs[1].max == 5
    ids = np.array([[5, 6, 7]])
    text = refused(lambda: model({"input_ids": ids, "attention_mask": np.array([[1, 5, 1]])}), InputError,
                   r"attention_mask has value 5 at \[0, 1\]; expected 0 \(padding\) or 1 \(a token\)")
    assert "whatever the manifest allows" in text
    refused(lambda: model({"input_ids": ids, "attention_mask": np.array([[1, -1, 1]])}), InputError, "value -1")
    model({"input_ids": ids, "attention_mask": np.array([[1, 1, 0]])})  # 0/1 still runs


def test_ids_past_the_vocabulary_are_refused_whatever_the_manifest_says(plain_copy):
    from dataclasses import replace

    from edgeformer.runtime.inputs import validate_inputs

    model = runtime.load(plain_copy)
    loosened = [replace(model.inputs[0], max=10**6), model.inputs[1]]  # the config's vocabulary still rules
    text = refused(lambda: validate_inputs(model.manifest, {"input_ids": np.array([[1, 300, 2]])}, loosened), InputError,
                   r"input_ids has value 300 at \[0, 1\]; expected token ids in \[0, 299\] \(vocab_size is 300\)")
    assert "whatever the manifest allows" in text
    validate_inputs(model.manifest, {"input_ids": np.array([[1, 299, 2]])}, loosened)


def rewritten_graphs():
    """(name, a change to the golden graph's bytes): each leaves a file that onnxruntime cannot open."""
    import onnx

    def edit(change):
        def apply(data: bytes) -> bytes:
            m = onnx.load_from_string(data)
            change(m)
            return m.SerializeToString()
        return apply

    def node_type(m):
        m.graph.node[0].op_type = "NoSuchOp"

    def ir_version(m):
        m.ir_version = 99

    def short_weight(m):
        m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:4]

    def dangling(m):
        m.graph.node[1].input[0] = "nowhere"

    return [
        ("garbage", lambda data: b"garbage" * 10, "do not parse as an ONNX graph"),
        ("truncated", lambda data: data[: len(data) // 2], "do not parse as an ONNX graph"),
        ("flipped", lambda data: data[:100] + bytes([data[100] ^ 0xFF]) + data[101:], "do not parse as an ONNX graph"),
        ("empty", lambda data: b"", "holds no ONNX graph"),
        ("node type", edit(node_type), "node 'node_Shape_0' is of type NoSuchOp, which opset 23 does not have"),
        ("IR version", edit(ir_version), "the graph has ONNX IR version 99; this onnxruntime reads up to"),
        ("short weight", edit(short_weight), "holds 4 bytes where its shape and type need"),
        ("dangling input", edit(dangling), "the graph is invalid: node input 'nowhere' is not a graph input"),
    ]


@pytest.mark.parametrize("name, change, words", rewritten_graphs(), ids=[c[0] for c in rewritten_graphs()])
def test_a_graph_rewritten_with_its_hash_is_refused_in_our_words(plain_copy, name, change, words):
    graph = plain_copy / "model.onnx"
    graph.write_bytes(change(graph.read_bytes()))
    rehash(plain_copy, "model.onnx")
    text = refused(lambda: runtime.load(plain_copy), BundleError, "model.onnx is not a graph onnxruntime")
    assert words in text and "the bundle is corrupt" in text


def test_the_cli_refuses_a_rewritten_graph_in_one_line(plain_copy):
    (plain_copy / "model.onnx").write_bytes(b"\x08\x07" * 50)
    rehash(plain_copy, "model.onnx")
    cli_refuses(["run", plain_copy, "--ids", "1 2 3"], "is not a graph onnxruntime")


def test_a_graph_of_a_future_opset_is_refused_in_our_words(tmp_path):
    import onnx

    from edgeformer.runtime.sessions import SessionError, create_session

    m = onnx.load(GOLDEN / "plain" / "model.onnx")
    m.opset_import[0].version = 99
    path = tmp_path / "future.onnx"
    onnx.save(m, path)
    text = refused(lambda: create_session(path), SessionError, "the graph uses opset 99 of ai.onnx; this onnxruntime")
    assert "under development" not in text
