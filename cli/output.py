"""How the CLI speaks: tables for people, JSON for machines, one-line errors on stderr."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    cells = [[str(x) for x in r] for r in rows]
    width = table_width()
    # A cell too long for its column wraps, and a word longer than the column folds onto the next line:
    # nothing is cut to "...". Text reads from the left, numbers line up on the right.
    t = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        values = [r[i] for r in cells if i < len(r)]
        text = any(any(ch.isalpha() for ch in v) and not v.endswith("x") for v in values)
        t.add_column(c, justify="left" if i == 0 or text else "right", overflow="fold")
    for r in cells:
        t.add_row(*r)
    Console(width=width).print(t)


PIPED_WIDTH = 120  # a pipe or a log without COLUMNS: wide enough for most tables, narrow enough to read


def table_width() -> int:
    """COLUMNS when set (a pipe included), else the terminal's width, else PIPED_WIDTH."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return os.get_terminal_size(sys.stdout.fileno()).columns
    return PIPED_WIDTH


SIGNATURE = "edgeformer.signature"  # click context meta: the signature check a verb made (run_cmd.confirm_signature)


def write_json(dest: str | None, data: Any) -> None:
    """Write `data` to the file `dest`, or to stdout when `dest` is '-'. A verb that checked the bundle's
    signature reports it there too, as `signature`."""
    if dest is None:
        return
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is not None and SIGNATURE in ctx.meta and isinstance(data, dict):
        data = {**data, "signature": ctx.meta[SIGNATURE]}
    text = json.dumps(data, indent=2, default=_default)
    if dest == "-":
        sys.stdout.write(text + "\n")
        return
    path = Path(dest)
    if path.exists() and not path.is_file():  # a device or a pipe (/dev/null): written in place
        path.write_text(text + "\n")
        return
    tmp = path.with_name(f".{path.name}.tmp")  # renamed into place: a killed run leaves no half-written JSON
    try:
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _default(o: Any) -> Any:
    if hasattr(o, "to_json"):  # manifest records, reports
        return o.to_json()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"cannot serialise {type(o).__name__}")


# The flag that sets each runtime keyword argument an error may name as its remedy (runtime.errors):
# (argument, value) -> what to type on the command line.
FLAGS = {
    ("truncation", True): "--truncate",
    ("truncation", False): "--no-truncate",
    ("on_overflow", "truncate"): "--truncate",
    ("on_overflow", "error"): "--no-truncate",
}


def cli_setting(argument: str, value: Any) -> str:
    flag = FLAGS.get((argument, value))
    return f"give {flag}" if flag else f"pass {argument}={value!r}"


def error_text(error: BaseException) -> str:
    """An error's message as the command line says it: remedies named by their flags."""
    from edgeformer.runtime.errors import EdgeformerError

    return one_line(error.worded(cli_setting) if isinstance(error, EdgeformerError) else error)


LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def one_line(message: str) -> str:
    """`message` with every character a terminal or str.splitlines() would break on escaped: a path
    or text echoed from the user's input must not split an error into two lines."""
    return "".join(ch.encode("unicode_escape").decode("ascii") if ch in LINE_BREAKS else ch for ch in str(message))


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def parity_table(title: str, report) -> None:
    table(title, report.columns(), report.rows())
