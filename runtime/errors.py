"""The one error family that edgeformer raises for bad input.

Every message says what was wrong and what was expected, on one line, so the CLI can print it
as is and exit 2 without a traceback.

A message may name a setting that would let the call through: it holds the placeholder
"{remedy}" and the error carries the setting as `remedy` (the keyword argument and its value).
str() words it for Python ("pass truncation=True"); the CLI words it as its flag (cli.output.FLAGS),
so each side reads the name it can type.
"""

from __future__ import annotations

from typing import Any, Callable

REMEDY = "{remedy}"


def python_setting(argument: str, value: Any) -> str:
    return f"pass {argument}={value!r}"


class EdgeformerError(Exception):
    """Bad input: a missing or corrupt artifact, a wrong argument, an input that does not fit."""

    def __init__(self, *args: Any, remedy: tuple[str, Any] | None = None):
        super().__init__(*args)
        self.remedy = remedy

    def worded(self, setting: Callable[[str, Any], str] = python_setting) -> str:
        """The message with its remedy, if any, worded by `setting(argument, value)`."""
        text = super().__str__()
        remedy = getattr(self, "remedy", None)  # a subclass may set up its own arguments
        if remedy is None or REMEDY not in text:
            return text
        return text.replace(REMEDY, setting(*remedy), 1)

    def __str__(self) -> str:
        return self.worded()


class BundleError(EdgeformerError):
    """A bundle directory that is missing, incomplete, tampered with or of an unknown format."""


class InputError(EdgeformerError, ValueError):
    """Arrays handed to a model that do not match what its manifest declares."""


class GateFailure(EdgeformerError):
    """A check that the artifact failed: parity, an accuracy budget, a deployment check (exit 1).

    Unlike bad input, the command ran as asked and measured a result that does not hold; the
    report says what was measured. The CLI prints `report_table()` (title, columns, rows) when there
    is one, then `report_lines()` and `diagnosis` (where the result went wrong, e.g. the first node
    that diverges), then the message, and exits 1."""

    diagnosis: list[str] = []

    def report_table(self) -> tuple[str, list[str], list[list[str]]] | None:
        return None

    def report_lines(self) -> list[str]:
        return []
