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
SubjectPublicKeyInfo. A key argument is a key object, PEM bytes, or a `str`: PEM key text when it
starts (after blanks) with the PEM header "-----BEGIN", else the path of a PEM file (as is an
os.PathLike). The cryptography is the `cryptography` package (`pip install edgeformer[sign]`);
nothing here implements a primitive.

Every refusal is one line in edgeformer's words: a path or a field's value that holds a newline is
shown quoted, and neither `cryptography`'s nor Python's own messages are passed on. signature.json
is checked field by field before the signature is: an object of exactly the six fields above,
`format_version` one this edgeformer reads, `digest` and `key` 64 lowercase hex digits, `signature`
base64 of 64 bytes; `key` must be the given key's id and `digest` the bundle's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from .artifacts import check_format_version
from .bundle import SIGNATURE_FILE
from .errors import BundleError, EdgeformerError

FORMAT, FORMAT_VERSION = "edgeformer.signature", 1
DOMAIN = b"edgeformer.bundle-signature.1\n"
FIELDS = ("format", "format_version", "algorithm", "digest", "key", "signature")
PEM_HEADER = "-----BEGIN"
MAX_KEY_BYTES = MAX_SIGNATURE_BYTES = 1 << 16  # a key or signature.json is under 1 KB
HEX64 = re.compile(r"[0-9a-f]{64}")


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
    if not isinstance(private_path, (str, os.PathLike)):
        raise EdgeformerError(f"key file name {shown(private_path)}; expected a path for the new private key")
    private_path = Path(private_path)
    public_path = private_path.with_name(private_path.name + ".pub")
    for p in (private_path, public_path):
        if _exists(p):
            raise EdgeformerError(f"{shown(p)} already exists; choose another key file name")
    if not _is_dir(private_path.parent):
        raise EdgeformerError(f"cannot write {shown(private_path)}: directory {shown(private_path.parent)} does not exist")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private_pem)
        public_path.write_bytes(public_pem)
    except (OSError, ValueError) as e:
        raise EdgeformerError(f"cannot write {shown(private_path)}: {_os_reason(e)}") from None
    return private_path, public_path


def shown(value: Any) -> str:
    """A path or value as it goes into a one-line message: as is when printable, else quoted with escapes."""
    text = str(value)
    if text.isprintable() and text.strip() == text and text:
        return text if len(text) <= 200 else text[:197] + "..."
    text = repr(text)
    return text if len(text) <= 200 else text[:197] + "..."


def _exists(p: Path) -> bool:
    try:
        return p.exists() or p.is_symlink()
    except (OSError, ValueError):  # a name the file system cannot hold (NUL, too long)
        return False


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except (OSError, ValueError):
        return False


def _os_reason(e: BaseException) -> str:
    return (e.strerror or type(e).__name__).lower() if isinstance(e, OSError) else "not a valid file name"


def read_key(source: Any, private: bool):
    """The Ed25519 key `source` names (see the module docstring for what a str means), or one
    EdgeformerError line saying what the source holds instead."""
    _, serialization, Ed25519PrivateKey, Ed25519PublicKey = _crypto()
    kind = Ed25519PrivateKey if private else Ed25519PublicKey
    if isinstance(source, kind):
        return source
    what = "private" if private else "public"
    if isinstance(source, str) and source.lstrip().startswith(PEM_HEADER):
        data, where = source.encode("utf-8", "replace"), f"the {what} key text"
    elif isinstance(source, (str, os.PathLike)):
        data, where = _key_file(source, what), f"{what} key file {shown(source)}"
    elif isinstance(source, (bytes, bytearray)):
        data, where = bytes(source), f"the {what} key bytes"
    else:
        raise EdgeformerError(f"{what} key of type {type(source).__name__}; expected a PEM file path, PEM text or bytes, "
                              f"or an Ed25519{'Private' if private else 'Public'}Key")
    _check_pem_label(data, where, private)
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except Exception:  # cryptography's parsers raise several types; their text is theirs, not ours
        raise EdgeformerError(f"{where} holds a PEM {what} key block that does not decode (corrupt base64 or key "
                              "data); expected one written by 'edgeformer keygen'") from None
    if not isinstance(key, kind):
        raise EdgeformerError(f"{where} holds {_algorithm(key)} {what} key; expected an Ed25519 {what} key as written by "
                              "'edgeformer keygen'")
    return key


def _algorithm(key: Any) -> str:
    """'an RSA', 'an elliptic-curve (EC)', ...: the kind of a key that is not Ed25519."""
    name = type(key).__name__.lstrip("_")
    for marker, words in (("RSA", "an RSA"), ("EllipticCurve", "an elliptic-curve (EC)"), ("EC", "an elliptic-curve (EC)"),
                          ("Ed448", "an Ed448"), ("DSA", "a DSA"), ("X25519", "an X25519"), ("X448", "an X448")):
        if name.startswith(marker):
            return words
    return f"a {name}"


def _key_file(source: str | os.PathLike, what: str) -> bytes:
    path = Path(source)
    try:
        if not path.is_file():
            raise EdgeformerError(f"{what} key file {shown(source)} does not exist"
                                  + (" (it is a directory)" if path.is_dir() else ""))
        if path.stat().st_size > MAX_KEY_BYTES:
            raise EdgeformerError(f"{what} key file {shown(source)} is {path.stat().st_size} bytes; a PEM key is under 1 KB")
        return path.read_bytes()
    except (OSError, ValueError) as e:
        raise EdgeformerError(f"cannot read {what} key file {shown(source)}: {_os_reason(e)}") from None


def _check_pem_label(data: bytes, where: str, private: bool) -> None:
    """Refuse, by its PEM header, a file that holds no key or the other half of the pair."""
    labels = re.findall(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----", data)
    want = b"PRIVATE KEY" if private else b"PUBLIC KEY"
    what = "private" if private else "public"
    if not labels:
        raise EdgeformerError(f"{where} is not a PEM {what} key (no '-----BEGIN {want.decode()}-----' line); expected "
                              "one written by 'edgeformer keygen'")
    label = labels[0]
    if label == want:
        return
    if label == b"ENCRYPTED PRIVATE KEY":
        raise EdgeformerError(f"{where} is encrypted with a password; expected an unencrypted key as written by "
                              "'edgeformer keygen'")
    if private and label == b"PUBLIC KEY":
        raise EdgeformerError(f"{where} holds a public key; expected the private key (the file without .pub)")
    if not private and label.endswith(b"PRIVATE KEY"):
        raise EdgeformerError(f"{where} holds a private key; expected the public key (the .pub file)")
    raise EdgeformerError(f"{where} holds a PEM '{label.decode()}' block; expected an Ed25519 '{want.decode()}' block "
                          "as written by 'edgeformer keygen'")


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
    record = read_signature(path)
    extra = unlisted_files(directory, manifest_files)
    if extra:
        raise SignatureError(f"{directory} holds {extra[0]}, which its signed manifest does not list; refused")
    given = key_id(key)
    if record["key"] != given:
        raise SignatureError(f"{directory}: the signature does not verify with the given public key (it was signed by "
                             f"another key: {SIGNATURE_FILE} names key {record['key'][:16]}..., the given key is "
                             f"{given[:16]}...)")
    digest = bundle_digest(directory)
    try:
        key.verify(base64.b64decode(record["signature"], validate=True), digest)
    except InvalidSignature:
        raise SignatureError(f"{directory}: the signature does not verify with the given public key; the "
                             "manifest or a file was changed after signing, or the key is not the signer's") from None
    if record["digest"] != digest.hex():
        raise SignatureError(f"{path} records digest {record['digest'][:16]}..., but the bundle's is {digest.hex()[:16]}...; "
                             "the signature file was edited after signing")
    return given


def read_signature(path: Path) -> dict[str, Any]:
    """signature.json's record, every field checked (see the module docstring), or one SignatureError line."""
    def bad(problem: str) -> SignatureError:
        return SignatureError(f"{path} is malformed: {problem}; the signature cannot be checked")

    try:
        size = path.stat().st_size
        if size > MAX_SIGNATURE_BYTES:
            raise bad(f"it is {size} bytes (a signature is under 1 KB)")
        record = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise bad("it is not JSON text") from None
    if not isinstance(record, dict):
        raise bad(f"it holds a JSON {_json_kind(record)}; expected an object with the fields {', '.join(FIELDS)}")
    unknown = sorted(set(record) - set(FIELDS))
    missing = [f for f in FIELDS if f not in record]
    if unknown or missing:
        raise bad(f"unknown field {shown(unknown[0])}" if unknown else f"no {missing[0]} field")
    if record["format"] != FORMAT:
        raise bad(f"format is {_value(record['format'])}; expected '{FORMAT}'")
    check_format_version(path, record["format_version"], FORMAT_VERSION, (FORMAT_VERSION,), SignatureError)
    if record["algorithm"] != "ed25519":
        raise bad(f"algorithm is {_value(record['algorithm'])}; expected 'ed25519'")
    for field in ("digest", "key"):
        if not isinstance(record[field], str) or not HEX64.fullmatch(record[field]):
            raise bad(f"{field} is {_value(record[field])}; expected 64 lowercase hex digits (a sha256)")
    signature = record["signature"]
    try:
        raw = base64.b64decode(signature, validate=True) if isinstance(signature, str) and signature.isascii() else None
    except (binascii.Error, ValueError):
        raw = None
    if raw is None or len(raw) != 64:
        raise bad(f"signature is {_value(signature)}; expected the base64 text of a 64-byte Ed25519 signature")
    return record


def _json_kind(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(v), "number")


def _value(v: Any) -> str:
    """A JSON value as it goes into a one-line message: its repr, cut to 40 characters."""
    text = "null" if v is None else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
