"""Signed bundles: `edgeformer keygen`, `edgeformer sign`, `runtime.load(..., public_key=...)` and
`edgeformer run --public-key`. A bundle that is unsigned when a key is given, signed by another
key, or changed after signing (manifest, a file re-hashed into the manifest, an added file) is
refused in one line."""

import json
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeformer import runtime
from edgeformer.cli.main import cli
from edgeformer.runtime.artifacts import sha256_file
from edgeformer.runtime.signing import SignatureError, keygen, sign_bundle

pytest.importorskip("cryptography")
GOLDEN = Path(__file__).parent / "golden" / "v1"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    return keygen(root / "key"), keygen(root / "other")


@pytest.fixture
def signed(tmp_path, keys):
    b = shutil.copytree(GOLDEN / "plain", tmp_path / "b")
    sign_bundle(b, keys[0][0])
    return b


def test_a_signed_bundle_loads_with_its_key(signed, keys):
    private, public = keys[0]
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    model = runtime.load(signed, public_key=public)
    assert model.classify(["the quick fox"]).labels[0] in ("a", "b", "c")
    runtime.load(signed, public_key=public.read_bytes())  # PEM bytes work too
    runtime.load(signed)  # without a key, the signature is not asked for


def edit_manifest(b, change):
    m = json.loads((b / "manifest.json").read_text())
    change(m)
    (b / "manifest.json").write_text(json.dumps(m, indent=2))


def test_unsigned_other_key_and_tampering_are_refused(tmp_path, signed, keys):
    public, other = keys[0][1], keys[1][1]
    with pytest.raises(SignatureError, match="signed by another key"):
        runtime.load(signed, public_key=other)
    unsigned = shutil.copytree(GOLDEN / "plain", tmp_path / "unsigned")
    with pytest.raises(SignatureError, match=r"is not signed \(no signature.json\) and a public key was given"):
        runtime.load(unsigned, public_key=public)
    # the manifest loosened after signing (its own bytes were never covered by the file hashes)
    edit_manifest(signed, lambda m: m["parity"].update(atol=1.0))
    with pytest.raises(SignatureError, match="the signature does not verify with the given public key"):
        runtime.load(signed, public_key=public)


def test_a_file_replaced_and_rehashed_into_the_manifest_is_refused(signed, keys):
    tok = signed / "tokenizer.json"
    tok.write_text(tok.read_text().replace('"<unk>"', '"<UNK>"'))
    edit_manifest(signed, lambda m: m["files"]["tokenizer.json"].update(sha256=sha256_file(tok), bytes=tok.stat().st_size))
    runtime.load(signed)  # consistent hashes: only the signature can tell
    with pytest.raises(SignatureError, match="does not verify"):
        runtime.load(signed, public_key=keys[0][1])


def test_an_added_file_and_a_broken_signature_are_refused(signed, keys):
    (signed / "extra.onnx").write_bytes(b"x")
    with pytest.raises(SignatureError, match="holds extra.onnx, which its signed manifest does not list"):
        runtime.load(signed, public_key=keys[0][1])
    (signed / "extra.onnx").unlink()
    (signed / "signature.json").write_text('{"signature": "***"}')
    with pytest.raises(SignatureError, match="signature.json is malformed"):
        runtime.load(signed, public_key=keys[0][1])


def test_keys_are_checked(tmp_path, signed, keys):
    from edgeformer.runtime import EdgeformerError

    (tmp_path / "junk.pem").write_text("not a key")
    for bad, message in ((tmp_path / "junk.pem", "is not a PEM public key"), (tmp_path / "none.pem", "does not exist"),
                         (12, "public key of type int"), (keys[0][0], "holds a private key; expected the public key")):
        with pytest.raises(EdgeformerError, match=message):
            runtime.load(signed, public_key=bad)
    with pytest.raises(EdgeformerError, match="already exists"):
        keygen(keys[0][0])
    with pytest.raises(EdgeformerError, match="public_key needs verify=True"):
        runtime.load(signed, public_key=keys[0][1], verify=False)


def test_the_cli_signs_and_checks(tmp_path):
    b = shutil.copytree(GOLDEN / "plain", tmp_path / "b")
    runner = CliRunner()
    result = runner.invoke(cli, ["keygen", "--out", str(tmp_path / "k")])
    assert result.exit_code == 0 and (tmp_path / "k.pub").is_file(), result.output
    run = ["run", str(b), "--ids", "1 2 3", "--public-key", str(tmp_path / "k.pub")]
    result = runner.invoke(cli, run)
    assert result.exit_code == 2 and "is not signed" in result.stderr and len(result.stderr.splitlines()) == 1
    assert runner.invoke(cli, ["sign", str(b), "--key", str(tmp_path / "k")]).exit_code == 0
    assert runner.invoke(cli, run).exit_code == 0
    (b / "manifest.json").write_text((b / "manifest.json").read_text().replace('"opset": 23', '"opset":  23'))
    result = runner.invoke(cli, run)
    assert result.exit_code == 2 and "does not verify" in result.stderr
