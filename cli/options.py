"""Option groups shared by the verbs: one flag name per meaning, the same help everywhere.

    --out DIR / --overwrite       the artifact a verb writes, and whether it may replace one
    --json FILE                   the result as JSON to FILE, '-' for stdout
    --providers/--spin/--threads/--max-batch  how ONNX Runtime runs a bundle
    --seed N                      every random draw of a verb (default 0, so runs repeat)
    --batch-size/--seq-len        the shape of what is timed or trained on
    --truncate/--no-truncate      cut an input to the model's context instead of refusing it
    --attention-kind/--window/... the model's attention for long inputs, positions and max length (train, distill)

Old spellings (bench's --batch, --seq, --seconds; run's --no-truncation) stay as hidden aliases
for one release: they work, and help shows only the new name.
"""

from __future__ import annotations

import functools
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
    f = click.option("--max-batch", type=click.IntRange(min=1),
                     help="The most rows one call may take (default: the manifest's limit, and what half the "
                          "memory available at load holds); larger calls are refused.")(f)
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


# ModelConfig fields set by long_input_options; a flag left out keeps the preset's (distill: the teacher's) value.
LONG_INPUT_FIELDS = ("attention_kind", "window", "global_tokens", "linformer_k", "lsh_buckets", "lsh_rounds",
                     "reversible", "positional", "max_len")


def long_input_options(f):
    """--attention-kind and its settings, --reversible, --positional, --max-len: passed on as `long_input`,
    a dict of the ModelConfig fields given (train and distill)."""
    @functools.wraps(f)
    def collect(*args, **kwargs):
        given = {name: kwargs.pop(name) for name in LONG_INPUT_FIELDS}
        kwargs["long_input"] = {name: value for name, value in given.items() if value is not None}
        return f(*args, **kwargs)

    positive = click.IntRange(min=1)
    options = [
        click.option("--attention-kind", type=click.Choice(["full", "local", "longformer", "linformer", "lsh"]),
                     help="Self-attention: full (default), local (sliding window), longformer (window + global tokens), "
                          "linformer (keys projected to --linformer-k rows), lsh (Reformer hashing)."),
        click.option("--window", type=positive, help="local/longformer: keys within W tokens (causal: W before); lsh: chunk length. [default: 64]"),
        click.option("--global-tokens", type=positive, help="longformer: the first N positions are global. [default: 1]"),
        click.option("--linformer-k", type=positive, help="linformer: projected length of keys and values. [default: 64]"),
        click.option("--lsh-buckets", type=positive, help="lsh: hash buckets (even). [default: 8]"),
        click.option("--lsh-rounds", type=positive, help="lsh: hash rounds. [default: 1]"),
        click.option("--reversible/--no-reversible", default=None,
                     help="Reversible residual blocks: activations recomputed in backward. [default: no]"),
        click.option("--positional", type=click.Choice(["sinusoidal", "learned", "rotary"]),
                     help="Position encoding (default: sinusoidal for encoders, learned for decoders)."),
        click.option("--max-len", type=click.IntRange(min=2), help="Longest input the model accepts (default: the preset's)."),
    ]
    for option in reversed(options):
        collect = option(collect)
    return collect
