"""The one error family that edgeformer raises for bad input.

Every message says what was wrong and what was expected, on one line, so the CLI can print it
as is and exit 2 without a traceback.
"""


class EdgeformerError(Exception):
    """Bad input: a missing or corrupt artifact, a wrong argument, an input that does not fit."""


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
