"""`edgeformer verify DIR`: rerun the test vectors a bundle carries (runtime/vectors.py). Imports no PyTorch."""

from __future__ import annotations

import click

from edgeformer.runtime.errors import GateFailure

from .options import json_option, public_key_option
from .output import table, write_json

COLUMNS = ["case", "call", "max abs err", "atol", "tokens agree", "result"]


class VectorsFailed(GateFailure):
    """A case of the bundle's vectors gave another answer here (exit 1)."""


@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--threads", type=click.IntRange(min=1), help="ONNX Runtime intra-op threads (default: all cores).")
@public_key_option
@json_option
def verify(bundle, threads, public_key, json_out):
    """Rerun the test vectors BUNDLE carries (vectors.json) and compare with what it recorded."""
    from edgeformer import runtime
    from edgeformer.runtime.vectors import verify_vectors

    model = runtime.load(bundle, threads=threads, public_key=public_key)
    if public_key is not None:
        from .run_cmd import confirm_signature

        confirm_signature(bundle, public_key)
    report = verify_vectors(model)
    if report.has_vectors and json_out != "-":
        recorded = report.recorded
        table(f"{bundle}: test vectors recorded by {recorded.get('runtime', '?')} onnxruntime "
              f"{recorded.get('onnxruntime', '?')} on {recorded.get('cpu', '?')}", COLUMNS, report.rows())
    write_json(json_out, report.to_json())
    if not report.passed:
        raise VectorsFailed(report.summary())
    if json_out != "-":
        click.echo(report.summary())
