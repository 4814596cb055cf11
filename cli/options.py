"""Option groups shared by the verbs: one flag name per meaning, the same help everywhere.

    --out DIR / --overwrite       the artifact a verb writes, and whether it may replace one
    --json FILE                   the result as JSON to FILE, '-' for stdout
    --plot FILE                   a picture of the result (.png, .svg, .pdf)
    --providers/--spin/--threads/--max-batch  how ONNX Runtime runs a bundle
    --seed N                      every random draw of a verb (default 0, so runs repeat)
    --batch-size/--seq-len        the shape of what is timed or trained on
    --truncate/--no-truncate      cut to the model's context instead of refusing (on by default everywhere)
    --attention-kind/--window/... the model's attention for long inputs, positions and max length (train, distill)

Every float option is a FiniteFloat (NaN and infinities refused, bounds checked) and every file a
verb writes is checked before its work starts (output_file): a gate never runs with NaN as its
budget, and a bad --json or --plot never costs a run.

Old spellings (bench's --batch, --seq, --seconds; run's --no-truncation) stay as hidden aliases
for one release: they work, and help shows only the new name.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
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


class FiniteFloat(click.FloatRange):
    """A float option that is a finite number within optional bounds, or one of `words` (passed on as given).

    click's FLOAT takes 'nan' and 'inf', and FloatRange lets NaN through (every comparison with NaN
    is false): a budget of NaN would switch its gate off, and an infinite one means no gate at all."""

    def __init__(self, min: float | None = None, max: float | None = None, min_open: bool = False,
                 max_open: bool = False, words: tuple[str, ...] = ()):
        super().__init__(min, max, min_open, max_open)
        self.words = tuple(words)

    def _describe_range(self) -> str:
        return super()._describe_range() if self.min is not None or self.max is not None else "finite"

    def get_metavar(self, param, ctx):
        return f"[{'|'.join(self.words)}|FLOAT]" if self.words else super().get_metavar(param, ctx)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip() in self.words:
            return value.strip()
        expected = f"{', '.join(self.words)} or a number {self._describe_range()}" if self.words \
            else f"a number {self._describe_range()}"
        try:
            if isinstance(value, str) and not value.isascii():  # float() reads '٣' as 3.0
                raise ValueError(value)
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number; expected {expected}", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number; expected {expected}", param, ctx)
        return super().convert(number, param, ctx)


def finite_floats(command: click.Command) -> None:
    """Make every float option under `command` a FiniteFloat with the bounds it declared (a verb declared
    with click's FLOAT or FloatRange gets the same refusals as the rest)."""
    for param in command.params:
        t = param.type
        if isinstance(t, click.types.FloatParamType) and not isinstance(t, FiniteFloat):
            bounds = (t.min, t.max, t.min_open, t.max_open) if isinstance(t, click.FloatRange) else ()
            param.type = FiniteFloat(*bounds)
    for sub in getattr(command, "commands", {}).values():
        finite_floats(sub)


def _probe_write(folder: Path) -> str | None:
    """Why no file can be created in `folder` (a read-only or kernel file system, no permission), or None.
    Creating one is the only test that holds for root, for whom access() says yes to /proc."""
    try:
        fd, name = tempfile.mkstemp(prefix=".edgeformer-write-check.", dir=folder)
    except OSError as e:
        return e.strerror or type(e).__name__
    os.close(fd)
    os.unlink(name)
    return None


def check_output_file(value: str) -> None:
    """Refuse a file a verb would write, before its work: a folder, a missing or unwritable folder."""
    path = Path(value)
    if not value.strip():
        raise click.BadParameter("an empty name; expected a file name")
    if path.is_dir():
        raise click.BadParameter(f"{value} is a directory; expected a file name")
    if path.exists() and not path.is_file():  # a device or a pipe (/dev/null, /dev/stdout): written as it is
        return
    if not path.parent.is_dir():
        raise click.BadParameter(f"cannot write {value}: directory {path.parent} does not exist")
    why = _probe_write(path.parent)
    if why:
        raise click.BadParameter(f"cannot write {value}: no file can be created in {path.parent} ({why})")


def check_output_dir_parent(value: str) -> None:
    """Refuse an output folder whose nearest existing parent cannot hold it, before the work."""
    if not value.strip():
        raise click.BadParameter("an empty name; expected a directory path")
    parent = Path(value).absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise click.BadParameter(f"cannot write {value}: {parent} is not a directory")
    why = _probe_write(parent)
    if why:
        raise click.BadParameter(f"cannot write {value}: nothing can be created in {parent} ({why})")


def claim_output(ctx, param, value) -> None:
    """Refuse a path another output option of the same call names already (`--json OUT` over `--out OUT`
    would be found out only after the work, when the second write fails)."""
    if os.path.exists(value) and not (os.path.isfile(value) or os.path.isdir(value)):
        return  # a device (/dev/null) takes any number of writes
    claimed = ctx.meta.setdefault("edgeformer.outputs", {})
    key = os.path.realpath(value)
    if key in claimed and claimed[key] != param.name:
        raise click.BadParameter(f"{value} is also --{claimed[key].replace('_out', '').replace('_', '-')}'s path; "
                                 "expected a path of its own", ctx=ctx, param=param)
    claimed[key] = param.name


def output_file(dash: bool = False):
    """Callback of an option that names a file to write ('-' for stdout where `dash`)."""
    def check(ctx, param, value):
        if value is None or (dash and value == "-"):
            return value
        check_output_file(value)
        claim_output(ctx, param, value)
        return value
    return check


def output_dir(ctx, param, value):
    if value is not None:
        check_output_dir_parent(value)
        claim_output(ctx, param, value)
    return value


def out_options(what: str, required: bool = True):
    def decorate(f):
        f = click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")(f)
        return click.option("--out", required=required, type=click.Path(file_okay=False), callback=output_dir,
                            help=f"{what} to write.")(f)
    return decorate


def json_option(f):
    return click.option("--json", "json_out", metavar="FILE", callback=output_file(dash=True), help=JSON_HELP)(f)


def _picture(ctx, param, value):
    if value is None:
        return value
    check_output_file(value)
    claim_output(ctx, param, value)
    from edgeformer.runtime.artifacts import check_picture_path

    check_picture_path(value)  # the suffix, and matplotlib
    return value


def plot_option(what: str):
    return click.option("--plot", metavar="FILE", callback=_picture, help=f"{what} (.png, .svg, .pdf; needs matplotlib).")


def runtime_options(f):
    f = click.option("--max-batch", type=click.IntRange(min=1),
                     help="The most rows one call may take; larger calls are refused [default: the manifest's limit, "
                          "and what half the memory available at load holds].")(f)
    f = click.option("--threads", type=click.IntRange(min=1), help="ONNX Runtime intra-op threads (default: all cores).")(f)
    f = click.option("--spin/--no-spin", default=None,
                     help="Let idle ONNX Runtime threads busy-wait (lower latency, burns a core) [default: on for "
                          "bundles that generate, whose decode steps are many tiny kernels; off otherwise].")(f)
    f = click.option("--providers", "-p", multiple=True, metavar="NAME",
                     help="Execution provider in order of preference: cpu, cuda, tensorrt, ... (repeatable) [default: cpu].")(f)
    return f


def public_key_option(f):
    # a path on the command line, always (the API also takes PEM text: runtime.signing)
    return click.option("--public-key", type=click.Path(dir_okay=False, path_type=Path),
                        help="Refuse BUNDLE unless it is signed by this key's owner ('edgeformer sign').")(f)


def seed_option(what: str, default: int = 0):
    return click.option("--seed", default=default, show_default=True, type=click.IntRange(min=0), help=f"Seed of {what}.")


def training_options(epochs: int | None):
    """--epochs/--batch-size/--lr/--seq-len/--seed, the same for train and distill. With `epochs` None (train),
    epochs, batch size and learning rate default to the task's recipe (edgeformer.tasks.defaults)."""
    recipe = epochs is None
    where = " (default: the task's recipe; 5 epochs, lr 0.001, batch 32 for --data)"

    def decorate(f):
        f = seed_option("initialisation, data order and dropout")(f)
        f = click.option("--seq-len", default=128, show_default=True, type=click.IntRange(min=2),
                         help="Longest training sequence.")(f)
        f = click.option("--lr", default=None if recipe else 1e-3, show_default=not recipe,
                         type=FiniteFloat(min=0, min_open=True), help="Peak learning rate." + (where if recipe else ""))(f)
        f = click.option("--batch-size", default=None if recipe else 32, show_default=not recipe, type=click.IntRange(min=1),
                         help="Global batch (over all processes under torchrun)." + (where if recipe else ""))(f)
        return click.option("--epochs", default=epochs, show_default=not recipe, type=click.IntRange(min=1),
                            help="Passes over the data." + (where if recipe else ""))(f)
    return decorate


def truncate_option(what: str):
    """--truncate/--no-truncate, on by default for every verb: cut to the model's context (and say so)
    instead of refusing; --no-truncate refuses. `what` says what is cut. (And the old --no-truncation of `run`.)"""
    return click.option("--truncate/--no-truncate", " /--no-truncation", "truncate", default=True, show_default=True,
                        cls=Aliased, help=f"Cut to the model's context instead of refusing: {what} "
                        "--no-truncate refuses.")


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
