"""The runtime's surfaces attacked as an attacker or a careless user would: bundles (symlink loops,
loosened manifests, graphs rewritten with their hashes), signing inputs, image and audio files and
arrays. Every case is refused with one EdgeformerError line in edgeformer's words (the CLI: exit 2,
one stderr line), never a traceback or a library's raw text."""

from __future__ import annotations

import json
import os
import shutil
import struct
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
                    "Symlink loop", "cryptography.io", "list indices", "object is not", "DecompressionBomb",
                    "cannot identify image file", "image file is truncated", "wave.Error", "buffer size")


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


# ---------------------------------------------------------------------------------------------- images


@pytest.fixture(scope="module")
def vit_bundle(tmp_path_factory):
    """A random tiny one-channel ViT for 8x8 images, exported (tests/media_bundles.py)."""
    from .media_bundles import vit_bundle

    return vit_bundle(tmp_path_factory.mktemp("media"))


def png(width: int, height: int, rows: int | None = None) -> bytes:
    """A 1-bit grayscale PNG of zeros, its IDAT holding `rows` rows (all of them by default): a
    20000 x 20000 image is 48 KB on disk."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    pack = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then the packed bits
    idat = b"".join(pack.compress(row) for _ in range(height if rows is None else rows)) + pack.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_a_decompression_bomb_png_is_refused_before_decoding(tmp_path, vit_bundle):
    import warnings

    from edgeformer.runtime.images import read_image_file

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png(20000, 20000))
    assert bomb.stat().st_size < 60_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even Pillow's DecompressionBombWarning on stderr
        text = refused(lambda: read_image_file(bomb), EdgeformerError, "bomb.png has more than 134,217,728 pixels")
        big = tmp_path / "big.png"  # past edgeformer's bound, under Pillow's: the header's size is named
        big.write_bytes(png(12000, 12000, rows=10))
        text = refused(lambda: read_image_file(big), EdgeformerError,
                       r"image file .*big.png is 12000x12000 \(HxW\), 144,000,000 pixels; edgeformer reads images of at "
                       r"most 134,217,728 pixels \(downscale it first\)")
    for flags in ([], ["--resize"]):
        cli_refuses(["run", vit_bundle, "--image", bomb, *flags], "pixels")


def test_a_huge_array_is_refused_before_it_is_resized(vit_bundle):
    import time

    model = runtime.load(vit_bundle)
    start = time.perf_counter()
    refused(lambda: model.classify_images([np.zeros((30000, 30000), np.uint8)], resize=True), InputError,
            r"image 0 is 30000x30000 \(HxW\), 900,000,000 pixels")
    assert time.perf_counter() - start < 2.0
    large = np.random.default_rng(0).integers(0, 256, (3000, 2000), dtype=np.uint8)
    start = time.perf_counter()
    assert len(model.classify_images([large], resize=True).labels) == 1
    assert time.perf_counter() - start < 2.0  # rows and columns are gathered first: no full-size float copy


def test_resizing_gathers_before_converting_and_keeps_the_bilinear_result():
    from edgeformer.runtime.images import resize_bilinear

    image = np.random.default_rng(1).integers(0, 256, (1, 37, 53), dtype=np.uint8)
    reference = resize_bilinear(image.astype(np.float32) / 255.0, 8)
    np.testing.assert_allclose(resize_bilinear(image, 8), reference, atol=1e-6)
    assert resize_bilinear(image, 8).dtype == np.float32


@pytest.mark.parametrize("images, words", [
    (None, "images of type NoneType; expected an image array"),
    (5, "images of type int"),
    ("digit.png", "images of type str"),
    ((np.zeros((8, 8), np.uint8) for _ in range(2)), "images of type generator (read once: pass a list)"),
    (iter([np.zeros((8, 8), np.uint8)]), "(read once: pass a list)"),
    ({"a": np.zeros((8, 8), np.uint8)}, "images of type dict"),
    ([None], "image 0 is of type NoneType; expected an array of pixels"),
    ([np.zeros((8, 8), np.uint8), "x"], "image 1 is of type str"),
    ([np.zeros((0, 8), np.uint8)], "image 0 is 0x8 (HxW): it has no pixels"),
    (np.zeros((0, 8, 8), np.uint8), "images have shape (0, 8, 8): no images given"),
    (np.zeros((0, 8, 8, 1), np.uint8), "images have shape (0, 8, 8, 1): no images given"),
])
def test_classify_images_refuses_what_is_not_images_in_one_line(vit_bundle, images, words):
    model = runtime.load(vit_bundle)
    text = refused(lambda: model.classify_images(images), InputError)
    assert words in text, text


def test_grayscale_stacks_are_a_batch_for_a_one_channel_model(vit_bundle):
    model = runtime.load(vit_bundle)
    images = np.random.default_rng(2).integers(0, 256, (5, 8, 8), dtype=np.uint8)  # (N, H, W), like sklearn's digits
    one_by_one = model.classify_images(list(images))
    for layout in ("HWC", "CHW"):
        stacked = model.classify_images(images, layout=layout)
        np.testing.assert_allclose(stacked.probabilities, one_by_one.probabilities, atol=1e-6)
    np.testing.assert_allclose(model.classify_images(images[:, :, :, None]).probabilities, one_by_one.probabilities,
                               atol=1e-6)
    for n in (1, 3, 4):  # as many images as an image has channels: still a stack of images of the model's size
        np.testing.assert_allclose(model.classify_images(images[:n]).probabilities, one_by_one.probabilities[:n], atol=1e-6)
    big = np.kron(images, np.ones((1, 2, 2), np.uint8))  # (5, 16, 16): a stack to resize
    assert len(model.classify_images(big, resize=True).labels) == 5
    refused(lambda: model.classify_images(np.zeros((8, 8, 3), np.uint8)), InputError, "has 3 channels in HWC layout")
    refused(lambda: model.classify_images(images, batch_size=0), InputError, "batch_size=0; expected a positive integer")


def test_image_files_that_do_not_decode_are_refused_in_our_words(tmp_path, vit_bundle):
    from PIL import Image

    from edgeformer.runtime.images import read_image_file

    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(good)
    jpeg, gif = tmp_path / "good.jpg", tmp_path / "good.gif"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(jpeg)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gif)
    cases = {
        "text.png": (b"not a png", "not a format Pillow reads"),
        "truncated.png": (good.read_bytes()[:40], "cannot read"),
        "truncated.jpg": (jpeg.read_bytes()[:200], "cannot read"),
        "header.gif": (gif.read_bytes()[:13], "cannot read"),
        "empty.png": (b"", "not a format Pillow reads"),
    }
    for name, (content, words) in cases.items():
        (tmp_path / name).write_bytes(content)
        text = refused(lambda: read_image_file(tmp_path / name), EdgeformerError)
        assert words in text and name in text, text
        assert "cannot identify image file" not in text and "image file is truncated" not in text, text
    refused(lambda: read_image_file(tmp_path), EdgeformerError, "is a directory")
    cli_refuses(["run", vit_bundle, "--image", tmp_path / "truncated.png"], "cannot read")


# ---------------------------------------------------------------------------------------------- audio


@pytest.fixture(scope="module")
def speech_bundle(tmp_path_factory):
    """A random tiny Conformer, exported (tests/media_bundles.py)."""
    from .media_bundles import speech_bundle

    return speech_bundle(tmp_path_factory.mktemp("media"))


def wav_bytes(data: bytes, channels: int = 1, rate: int = 16000, bits: int = 16, tag: int = 1,
              claimed: int | None = None) -> bytes:
    """A RIFF/WAVE file of a fmt chunk and a data chunk whose length field says `claimed` (default: the truth)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", len(data) if claimed is None else claimed) + data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tone(n: int = 16000) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)


def pcm16(samples: np.ndarray) -> bytes:
    return np.round(samples * 32767).astype("<i2").tobytes()


WAV_FILES = [
    ("odd.wav", wav_bytes(pcm16(tone()) + b"\0"), "its data chunk holds 32,001 bytes, not a whole number of 2-byte frames"),
    ("claims.wav", wav_bytes(pcm16(tone()), claimed=0xFFFFFFF0),
     "its header claims 4,294,967,280 bytes of samples but only 32,000 follow"),
    ("empty.wav", b"", "it is empty (0 bytes)"),
    ("short.wav", b"RIFF....", "it is 8 bytes, shorter than a RIFF/WAVE header"),
    ("text.wav", b"hello, this is not audio", "expected a RIFF/WAVE header"),
    ("nodata.wav", wav_bytes(b"")[:-8], "it has no data chunk"),
    ("silent.wav", wav_bytes(b""), "its data chunk holds no samples"),
    ("mulaw.wav", wav_bytes(b"\0" * 100, bits=8, tag=7), "its samples are mu-law (format 0x0007)"),
    ("12bit.wav", wav_bytes(b"\0" * 100, bits=12), "it has 12-bit integer PCM samples; expected 8, 16, 24, 32-bit"),
    ("nochannels.wav", wav_bytes(b"\0" * 100, channels=0), "it declares 0 channels"),
]


@pytest.mark.parametrize("name, content, words", WAV_FILES, ids=[c[0] for c in WAV_FILES])
def test_wav_files_that_are_not_readable_are_refused_with_the_reason(tmp_path, name, content, words):
    import tracemalloc

    from edgeformer.runtime.speech import read_wav

    path = tmp_path / name
    path.write_bytes(content)
    tracemalloc.start()
    try:
        text = refused(lambda: read_wav(path), EdgeformerError, f"cannot read .*{name} as a WAV file: ")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert words in text, text
    assert peak < 1 << 20  # nothing of the size a header claims was allocated


def test_the_cli_refuses_bad_wav_files_in_one_line(tmp_path, speech_bundle):
    for name, content, words in WAV_FILES[:3]:
        (tmp_path / name).write_bytes(content)
        cli_refuses(["run", speech_bundle, "--audio", tmp_path / name], words)
    loud = tmp_path / "loud.wav"
    loud.write_bytes(wav_bytes(np.full(16000, 1e30, "<f4").tobytes(), bits=32, tag=3))  # a float WAV
    cli_refuses(["run", speech_bundle, "--audio", loud], "expected samples in [-1, 1]")


def test_float_and_extensible_wav_files_are_read(tmp_path):
    from edgeformer.runtime.speech import read_wav

    samples = tone(1000)
    (tmp_path / "f.wav").write_bytes(wav_bytes(samples.astype("<f4").tobytes(), bits=32, tag=3))
    got, rate = read_wav(tmp_path / "f.wav")
    assert rate == 16000 and np.array_equal(got, samples)
    (tmp_path / "i.wav").write_bytes(wav_bytes(pcm16(samples)))
    got, _ = read_wav(tmp_path / "i.wav")
    np.testing.assert_allclose(got, samples, atol=1 / 32767)


@pytest.mark.parametrize("waveforms, words", [
    (None, "waveforms of type NoneType; expected one 1-D array of samples or a list of them"),
    (5, "waveforms of type int"),
    ((tone() for _ in range(2)), "waveforms of type generator (read once: pass a list)"),
    ("a.wav", "waveforms of type str"),
    ([None], "waveform 0 is of type NoneType"),
    ([np.full(16000, 1e30, np.float32)], "waveform 0 has sample 1e+30 at index 0; expected samples in [-1, 1]"),
    ([np.concatenate([tone(), [-1.5]]).astype(np.float32)], "has sample -1.5 at index 16000"),
    ([tone(), np.full(16000, 2.0, np.float64)], "waveform 1 has sample 2 at index 0"),
])
def test_transcribe_refuses_what_is_not_audio_in_one_line(speech_bundle, waveforms, words):
    model = runtime.load(speech_bundle)
    text = refused(lambda: model.transcribe(waveforms), InputError)
    assert words in text, text


def test_transcribe_takes_full_scale_audio_and_refuses_bad_settings(speech_bundle):
    model = runtime.load(speech_bundle)
    full = np.sign(tone()).astype(np.float32)  # exactly -1 and 1: inside the range
    assert len(model.transcribe([full, tone()])) == 2
    refused(lambda: model.transcribe(tone(), batch_size=0), InputError, "batch_size=0; expected a positive integer")
    refused(lambda: model.transcribe(tone(), sample_rate=None), InputError, "sample_rate of type NoneType")
