"""`edgeformer keygen` and `edgeformer sign`: Ed25519 keys and signed bundles (runtime.signing)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from edgeformer.runtime.errors import EdgeformerError

from .options import json_option, output_file
from .output import write_json


def replace_keys(out: str) -> tuple[Path, Path]:
    """A new pair written beside OUT, then renamed over OUT and OUT.pub: each file is whole at every moment."""
    from edgeformer.runtime.signing import keygen as make_keys

    private = Path(out)
    with tempfile.TemporaryDirectory(prefix=".edgeformer-keygen.", dir=private.parent) as work:
        new_private, new_public = make_keys(Path(work) / "key")
        public = private.with_name(private.name + ".pub")
        os.replace(new_public, public)
        os.replace(new_private, private)
    return private, public


@click.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False), callback=output_file(),
              help="Private key file to write (PEM, owner-only); the public key goes to OUT.pub.")
@click.option("--overwrite", is_flag=True, help="Replace OUT and OUT.pub if they exist (bundles signed with the old key "
              "then no longer load with the new public key).")
@json_option
def keygen(out, overwrite, json_out):
    """Write a new Ed25519 key pair for signing bundles."""
    from edgeformer.runtime.signing import key_id, keygen as make_keys, read_key

    existing = [p for p in (Path(out), Path(out + ".pub")) if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise EdgeformerError(f"{existing[0]} already exists; choose another key file name, or give --overwrite "
                              "to replace the pair")
    private, public = replace_keys(out) if existing else make_keys(out)
    kid = key_id(read_key(public, private=False))
    click.echo(f"wrote private key {private} (keep it secret) and public key {public} (key id {kid[:16]})",
               err=json_out == "-")  # stdout holds the JSON alone
    write_json(json_out, {"private_key": str(private), "public_key": str(public), "key_id": kid})


@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--key", required=True, type=click.Path(dir_okay=False), help="Private key file from 'edgeformer keygen'.")
@json_option
def sign(bundle, key, json_out):
    """Sign BUNDLE (its manifest and every file) with an Ed25519 private key: writes BUNDLE/signature.json."""
    from edgeformer.runtime.signing import sign_bundle

    path = sign_bundle(bundle, key)
    click.echo(f"signed {bundle}: {path}", err=json_out == "-")
    write_json(json_out, {"bundle": bundle, "signature": str(path)})
