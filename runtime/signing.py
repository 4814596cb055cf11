"""Signed bundles: an Ed25519 signature over a digest of the manifest (which holds every file's
sha256), checked by `runtime.load(bundle, public_key=...)` before any graph is opened.

    signature.json    {"format": "edgeformer.signature", "format_version": 1, "algorithm": "ed25519",
                       "digest": <sha256 hex of what was signed>, "key": <sha256 hex of the public key>,
                       "signature": <base64 Ed25519 signature of the digest>}

What is signed: sha256("edgeformer.bundle-signature.1\\n" + sha256(manifest.json's bytes)). The
manifest lists every other file of the bundle with its sha256, and `open_bundle` refuses a file
that does not match, so the signature covers the manifest and every file; a file in the folder
that the manifest does not list is refused when a key is given (it could only be there to be
read by something the manifest does not describe).

Keys are PEM files: the private key PKCS#8 (written readable by its owner only), the public key
SubjectPublicKeyInfo. The cryptography is the `cryptography` package (`pip install edgeformer[sign]`);
nothing here implements a primitive.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .bundle import SIGNATURE_FILE
from .errors import BundleError, EdgeformerError

FORMAT, FORMAT_VERSION = "edgeformer.signature", 1
DOMAIN = b"edgeformer.bundle-signature.1\n"


class SignatureError(BundleError):
    """A bundle that is not signed when a key is given, or whose signature does not verify."""


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    except ImportError:
        raise EdgeformerError("signing and verifying bundles needs the 'cryptography' package; "
                              "install edgeformer[sign]") from None
    return InvalidSignature, serialization, Ed25519PrivateKey, Ed25519PublicKey


def bundle_digest(directory: str | os.PathLike) -> bytes:
    """The 32 bytes a bundle's signature signs (see the module docstring)."""
    manifest = Path(directory) / "manifest.json"
    return hashlib.sha256(DOMAIN + hashlib.sha256(manifest.read_bytes()).digest()).digest()


def key_id(public_key) -> str:
    _, serialization, _, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def keygen(private_path: str | os.PathLike) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: `private_path` (owner-only) and `private_path`.pub; never overwrites."""
    _, serialization, Ed25519PrivateKey, _ = _crypto()
    private_path = Path(private_path)
    public_path = private_path.with_name(private_path.name + ".pub")
    for p in (private_path, public_path):
        if p.exists():
            raise EdgeformerError(f"{p} already exists; choose another key file name")
    if not private_path.parent.is_dir():
        raise EdgeformerError(f"cannot write {private_path}: directory {private_path.parent} does not exist")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def read_key(source: Any, private: bool):
    _, serialization, Ed25519PrivateKey, Ed25519PublicKey = _crypto()
    kind = Ed25519PrivateKey if private else Ed25519PublicKey
    if isinstance(source, kind):
        return source
    what = "private" if private else "public"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise EdgeformerError(f"{what} key file {path} does not exist")
        data, where = path.read_bytes()[: 1 << 16], str(path)
    elif isinstance(source, bytes):
        data, where = source, f"the {what} key bytes"
    else:
        raise EdgeformerError(f"{what} key of type {type(source).__name__}; expected a PEM file path, PEM bytes or an "
                              f"Ed25519{'Private' if private else 'Public'}Key")
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as e:
        raise EdgeformerError(f"{where} is not a PEM {what} key ({str(e).splitlines()[0][:60]}); "
                              "expected one written by 'edgeformer keygen'") from None
    if not isinstance(key, kind):
        raise EdgeformerError(f"{where} is a {type(key).__name__.lstrip('_')}; expected an Ed25519 {what} key")
    return key


def unlisted_files(directory: Path, listed) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.name not in ("manifest.json", SIGNATURE_FILE)
                  and p.relative_to(directory).as_posix() not in listed)


def sign_bundle(directory: str | os.PathLike, private_key: Any) -> Path:
    """Check the bundle (every file against its hash), sign it with `private_key`, write signature.json."""
    from .bundle import open_bundle

    key = read_key(private_key, private=True)
    bundle = open_bundle(directory, verify=True)
    extra = unlisted_files(bundle.path, bundle.manifest.files)
    if extra:
        raise BundleError(f"{bundle.path} holds {extra[0]}, which its manifest does not list; a signed bundle is "
                          "exactly what its manifest lists")
    digest = bundle_digest(bundle.path)
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, "algorithm": "ed25519", "digest": digest.hex(),
              "key": key_id(key.public_key()), "signature": base64.b64encode(key.sign(digest)).decode("ascii")}
    target = bundle.path / SIGNATURE_FILE
    tmp = target.with_name(f".{SIGNATURE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, target)
    return target


def verify_signature(directory: str | os.PathLike, manifest_files, public_key: Any) -> str:
    """Refuse, in one line, a bundle that is unsigned, holds files its manifest does not list, or whose
    signature does not verify with `public_key`. Returns the key id. The files' hashes are checked
    by open_bundle, so this checks the manifest that lists them."""
    InvalidSignature, _, _, _ = _crypto()
    key = read_key(public_key, private=False)
    directory = Path(directory)
    path = directory / SIGNATURE_FILE
    if not path.is_file() or path.is_symlink():
        raise SignatureError(f"{directory} is not signed (no {SIGNATURE_FILE}) and a public key was given; "
                             "sign it with 'edgeformer sign' or load it without public_key")
    try:
        record = json.loads(path.read_bytes()[: 1 << 16])
        signature = base64.b64decode(record["signature"], validate=True)
        if record.get("format") != FORMAT or record.get("algorithm") != "ed25519":
            raise ValueError("not an edgeformer ed25519 signature")
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise SignatureError(f"{path} is malformed ({str(e).splitlines()[0][:60]}); the signature cannot be checked") from None
    extra = unlisted_files(directory, manifest_files)
    if extra:
        raise SignatureError(f"{directory} holds {extra[0]}, which its signed manifest does not list; refused")
    try:
        key.verify(signature, bundle_digest(directory))
    except InvalidSignature:
        signer = record.get("key", "")
        other = " (it was signed by another key)" if isinstance(signer, str) and signer != key_id(key) else ""
        raise SignatureError(f"{directory}: the signature does not verify with the given public key{other}; the "
                             "manifest or a file was changed after signing, or the key is not the signer's") from None
    return key_id(key)
