"""`edgeformer keygen` and `edgeformer sign`: Ed25519 keys and signed bundles (runtime.signing)."""

from __future__ import annotations

import click

from .options import json_option, output_file
from .output import write_json


@click.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False), callback=output_file(),
              help="Private key file to write (PEM, owner-only); the public key goes to OUT.pub.")
@json_option
def keygen(out, json_out):
    """Write a new Ed25519 key pair for signing bundles."""
    from edgeformer.runtime.signing import key_id, keygen as make_keys, read_key

    private, public = make_keys(out)
    kid = key_id(read_key(public, private=False))
    click.echo(f"wrote private key {private} (keep it secret) and public key {public} (key id {kid[:16]})")
    write_json(json_out, {"private_key": str(private), "public_key": str(public), "key_id": kid})


@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--key", required=True, type=click.Path(dir_okay=False), help="Private key file from 'edgeformer keygen'.")
@json_option
def sign(bundle, key, json_out):
    """Sign BUNDLE (its manifest and every file) with an Ed25519 private key: writes BUNDLE/signature.json."""
    from edgeformer.runtime.signing import sign_bundle

    path = sign_bundle(bundle, key)
    click.echo(f"signed {bundle}: {path}")
    write_json(json_out, {"bundle": bundle, "signature": str(path)})
