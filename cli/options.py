"""Option groups shared by the verbs: one flag name per meaning, the same help everywhere.

    --out DIR / --overwrite       the artifact a verb writes, and whether it may replace one
    --json FILE                   the result as JSON to FILE, '-' for stdout
    --providers/--spin/--threads  how ONNX Runtime runs a bundle
    --seed N                      every random draw of a verb (default 0, so runs repeat)
    --batch-size/--seq-len        the shape of what is timed or trained on
    --truncate/--no-truncate      cut an input to the model's context instead of refusing it

Old spellings (bench's --batch, --seq, --seconds; run's --no-truncation) stay as hidden aliases
for one release: they work, and help shows only the new name.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

JSON_HELP = "Also write the result as JSON to FILE ('-' for stdout)."


class Aliased(click.Option):
    """An option whose first long name is shown in help; its other names are old spellings."""

    def get_help_record(self, ctx):
        names, negatives = self.opts, self.secondary_opts
        self.opts, self.secondary_opts = names[:1], negatives[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = names, negatives


def out_options(what: str, required: bool = True):
    def decorate(f):
        f = click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")(f)
        return click.option("--out", required=required, type=click.Path(file_okay=False), help=f"{what} to write.")(f)
    return decorate


def _writable_json(ctx, param, value):
    """--json FILE is checked before the verb's work: its folder must exist and FILE must not be a folder."""
    if value is None or value == "-":
        return value
    path = Path(value)
    if path.is_dir():
        raise click.BadParameter(f"{value} is a directory; expected a file name (or '-' for stdout)")
    if not path.parent.is_dir():
        raise click.BadParameter(f"cannot write {value}: directory {path.parent} does not exist")
    return value


def json_option(f):
    return click.option("--json", "json_out", metavar="FILE", callback=_writable_json, help=JSON_HELP)(f)


def runtime_options(f):
    f = click.option("--threads", type=click.IntRange(min=1), help="ONNX Runtime intra-op threads (default: all cores).")(f)
    f = click.option("--spin/--no-spin", default=False, show_default=True,
                     help="Let idle ONNX Runtime threads busy-wait (lower latency, burns a core).")(f)
    f = click.option("--providers", "-p", multiple=True, metavar="NAME",
                     help="Execution provider in order of preference: cpu, cuda, tensorrt, ... (repeatable).")(f)
    return f


def public_key_option(f):
    return click.option("--public-key", type=click.Path(dir_okay=False),
                        help="Refuse BUNDLE unless it is signed by this key's owner ('edgeformer sign').")(f)


def seed_option(what: str, default: int = 0):
    return click.option("--seed", default=default, show_default=True, type=click.IntRange(min=0), help=f"Seed of {what}.")


def _finite(ctx, param, value):
    """FloatRange lets NaN through (every comparison with NaN is false), and inf trains a NaN model."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def training_options(epochs: int):
    """--epochs/--batch-size/--lr/--seq-len/--seed, the same for train and distill."""
    def decorate(f):
        f = seed_option("initialisation, data order and dropout")(f)
        f = click.option("--seq-len", default=128, show_default=True, type=click.IntRange(min=2),
                         help="Longest training sequence.")(f)
        f = click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True),
                         callback=_finite, help="Peak learning rate.")(f)
        f = click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
                         help="Global batch (over all processes under torchrun).")(f)
        return click.option("--epochs", default=epochs, show_default=True, type=click.IntRange(min=1))(f)
    return decorate


def truncate_option(default: bool, what: str):
    """--truncate/--no-truncate (and the old --no-truncation of `run`)."""
    return click.option("--truncate/--no-truncate", " /--no-truncation", "truncate", default=default, show_default=True,
                        cls=Aliased, help=what)
