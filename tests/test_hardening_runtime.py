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


def refused(call, error: type[BaseException] = EdgeformerError, match: str | None = None) -> str:
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


# ---------------------------------------------------------------------------------------------- signing


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    pytest.importorskip("cryptography")
    from edgeformer.runtime.signing import keygen

    root = tmp_path_factory.mktemp("keys")
    return keygen(root / "key"), keygen(root / "other")


@pytest.fixture
def signed(plain_copy, keys):
    from edgeformer.runtime.signing import sign_bundle

    sign_bundle(plain_copy, keys[0][0])
    return plain_copy


def test_a_str_key_is_pem_text_when_it_starts_with_the_pem_header_else_a_path(signed, keys):
    public = keys[0][1]
    runtime.load(signed, public_key=public.read_text())  # PEM text
    runtime.load(signed, public_key="\n  " + public.read_text())  # blanks before the header
    runtime.load(signed, public_key=str(public))  # a path
    text = refused(lambda: runtime.load(signed, public_key="a\nb.pub"), EdgeformerError,
                   r"public key file 'a\\nb.pub' does not exist")
    assert "a\nb" not in text
    garbled = "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n"
    refused(lambda: runtime.load(signed, public_key=garbled), EdgeformerError,
            "the public key text holds a PEM public key block that does not decode")
    refused(lambda: runtime.load(signed, public_key=keys[0][0].read_text()), EdgeformerError,
            "the public key text holds a private key; expected the public key")


def key_files(tmp_path, keys):
    """(file contents, what the refusal says) for key files that hold no usable Ed25519 public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return [
        (b"not a key", "is not a PEM public key (no '-----BEGIN PUBLIC KEY-----' line)"),
        (b"", "is not a PEM public key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "block that does not decode"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "holds a PEM 'CERTIFICATE' block"),
        (keys[0][0].read_bytes(), "holds a private key; expected the public key (the .pub file)"),
        (ec_public, "holds an elliptic-curve (EC) public key; expected an Ed25519 public key"),
        (b"\xff\xfe" * 100, "is not a PEM public key"),
    ]


def test_key_file_errors_are_one_line_in_our_words(tmp_path, signed, keys):
    for i, (content, words) in enumerate(key_files(tmp_path, keys)):
        path = tmp_path / f"key{i}.pem"
        path.write_bytes(content)
        text = refused(lambda: runtime.load(signed, public_key=path), EdgeformerError)
        assert words in text and "cryptography" not in text and "Details" not in text, text
    refused(lambda: runtime.load(signed, public_key=tmp_path), EdgeformerError, r"does not exist \(it is a directory\)")
    refused(lambda: runtime.load(signed, public_key="x\0y"), EdgeformerError)
    cli_refuses(["run", signed, "--ids", "1 2 3", "--public-key", tmp_path / "key0.pem"], "is not a PEM public key")


def test_a_private_key_that_is_encrypted_or_public_is_refused_when_signing(tmp_path, plain_copy, keys):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgeformer.runtime.signing import keygen, sign_bundle

    encrypted = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.BestAvailableEncryption(b"pw"))
    refused(lambda: sign_bundle(plain_copy, encrypted), EdgeformerError, "is encrypted with a password")
    refused(lambda: sign_bundle(plain_copy, keys[0][1]), EdgeformerError, "holds a public key; expected the private key")
    refused(lambda: keygen(tmp_path / "no\nsuch" / "k"), EdgeformerError, r"directory 'no\\nsuch' does not exist|"
                                                                             r"directory '.*no\\nsuch' does not exist")
    assert not (plain_copy / "signature.json").exists()


def rewrite_signature(b: Path, change) -> None:
    path = b / "signature.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps(change(record)))


MALFORMED_SIGNATURES = [
    ("a list", lambda r: [r], "holds a JSON array; expected an object with the fields format, format_version"),
    ("null", lambda r: None, "holds a JSON null"),
    ("a string", lambda r: "signature", "holds a JSON string"),
    ("signature a number", lambda r: {**r, "signature": 5}, "signature is 5; expected the base64 text of a 64-byte"),
    ("signature a list", lambda r: {**r, "signature": ["a"]}, "signature is ['a']; expected the base64 text"),
    ("signature short", lambda r: {**r, "signature": "AAAA"}, "signature is 'AAAA'; expected the base64 text"),
    ("key null", lambda r: {**r, "key": None}, "key is null; expected 64 lowercase hex digits"),
    ("key a number", lambda r: {**r, "key": 7}, "key is 7; expected 64 lowercase hex digits"),
    ("digest zeros", lambda r: {**r, "digest": "0" * 64}, "records digest 0000000000000000..., but the bundle's is"),
    ("digest null", lambda r: {**r, "digest": None}, "digest is null; expected 64 lowercase hex digits"),
    ("format_version 99", lambda r: {**r, "format_version": 99}, "written by a newer edgeformer (format version 99)"),
    ("format_version text", lambda r: {**r, "format_version": "1"}, "has format_version '1'; this edgeformer reads"),
    ("format_version true", lambda r: {**r, "format_version": True}, "has format_version True"),
    ("format", lambda r: {**r, "format": {"a": 1}}, "format is {'a': 1}; expected 'edgeformer.signature'"),
    ("algorithm", lambda r: {**r, "algorithm": "rsa"}, "algorithm is 'rsa'; expected 'ed25519'"),
    ("unknown field", lambda r: {**r, "note": "x"}, "unknown field note"),
    ("missing field", lambda r: {k: v for k, v in r.items() if k != "key"}, "no key field"),
    ("another signer", lambda r: {**r, "key": "ab" * 32}, "it was signed by another key"),
]


@pytest.mark.parametrize("name, change, words", MALFORMED_SIGNATURES, ids=[c[0] for c in MALFORMED_SIGNATURES])
def test_a_malformed_signature_file_is_refused_in_one_line(signed, keys, name, change, words):
    from edgeformer.runtime.signing import SignatureError

    rewrite_signature(signed, change)
    text = refused(lambda: runtime.load(signed, public_key=keys[0][1]), SignatureError)
    assert words in text, text


@pytest.mark.parametrize("content", [b"\xff\xfe{", b"{" * 5000, b"", b"[" * 100_000 + b"]" * 100_000, b" " * 70_000])
def test_signature_files_that_are_not_json_objects_are_refused(signed, keys, content):
    from edgeformer.runtime.signing import SignatureError

    (signed / "signature.json").write_bytes(content)
    refused(lambda: runtime.load(signed, public_key=keys[0][1]), SignatureError, "signature.json is malformed")
