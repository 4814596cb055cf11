"""`edgeformer debug BUNDLE --reference CKPT|FLOAT_BUNDLE`: the first node where a bundle leaves its reference.

Against a checkpoint the reference is PyTorch (module hooks; imports torch); against a float32
bundle it is that graph (no torch). Exit 0 when no node is over the budget, 1 when one is (the
tables and the finding are printed first), 2 for bad input.
"""

from __future__ import annotations

from pathlib import Path

import click

from edgeformer.runtime.errors import EdgeformerError, GateFailure

from .options import FiniteFloat, json_option, plot_option, seed_option
from .output import table, write_json


class DivergenceFound(GateFailure):
    """A node is over the budget: the report was printed; exit 1."""


def _num(x: float) -> str:
    return f"{x:.3g}"


def print_report(report, title: str) -> None:
    from edgeformer.debug.report import around_table

    table(f"{title}: error at the end of each stage",
          ["stage", "tensor", "max abs", "rel error", "SQNR dB", "min cosine"],
          [[r.label, r.tensor, _num(r.max_abs), _num(r.rel), f"{r.sqnr_db:.1f}", f"{r.cosine:.6f}"] for r in report.layers])
    which, columns, rows = around_table(report)
    if rows:
        table(f"{title}: {which} (graph order)", columns, rows)
    for note in report.notes:
        click.echo(f"note: {note}")
    click.echo(report.line())
    if report.finding is not None and len(report.finding.region) > 1:
        click.echo("nodes since the last tensor within budget: " + ", ".join(report.finding.region))


@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--reference", required=True, type=click.Path(),
              help="The checkpoint the bundle was exported from (PyTorch), or the float32 bundle a quantized one was made from.")
@click.option("--atol", type=FiniteFloat(min=0, min_open=True),
              help="Float32 budget: max abs error of any tensor (default: the bundle's parity tolerance, 1e-4).")
@click.option("--rel", default=0.1, show_default=True, type=FiniteFloat(min=0, min_open=True),
              help="Quantized budget: a node's relative error ||q - f|| / ||f|| above this ...")
@click.option("--jump", default=4.0, show_default=True, type=FiniteFloat(min=1),
              help="... and this many times its inputs' relative error.")
@click.option("--text", "texts", multiple=True,
              help="Against a float32 bundle: a text to run (repeatable; default: 16 built-in paragraphs).")
@seed_option("the random inputs (against a checkpoint)")
@json_option
@plot_option("Draw the error curve to FILE")
def debug(bundle, reference, atol, rel, jump, texts, seed, json_out, plot):
    """Find the first node where BUNDLE leaves its reference, and the PyTorch module it came from."""
    from edgeformer.debug import plot_error_curve

    ref = Path(reference)
    if (ref / "manifest.json").is_file():
        from edgeformer.quantize.debug import debug_quantized

        report = debug_quantized(bundle, reference, texts=texts or None, rel=rel, jump=jump, atol=atol)
    elif (ref / "config.json").is_file():
        if texts:
            raise EdgeformerError("--text is for a float32 bundle reference; against a checkpoint the inputs are random")
        from edgeformer.export.debug import debug_checkpoint

        report = debug_checkpoint(bundle, reference, atol=atol, seed=seed, rel=rel, jump=jump)
    else:
        raise EdgeformerError(f"--reference {reference}: expected a checkpoint directory (config.json) "
                              "or a float32 bundle (manifest.json)")
    if json_out != "-":
        print_report(report, f"debug {bundle} against {report.reference} {reference}")
    write_json(json_out, report.to_json())
    if plot:
        plot_error_curve(report, plot, title=f"{Path(bundle).name} against {Path(reference).name}")
        if json_out != "-":
            click.echo(f"error curve written to {plot}")
    if report.finding is not None:
        f = report.finding
        over = sum(r.over for r in report.rows)
        raise DivergenceFound(f"{over} of {len(report.rows)} compared tensors over the budget; the first comes from "
                              f"{f.op_type} {f.node} in {f.module_label()}")
