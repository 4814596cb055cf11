"""Silence for the tools edgeformer drives (onnxruntime's quantizer and converters, the ONNX exporter).

They narrate every step: log records through loggers of their own (with their own handlers and
levels), Python warnings about unrelated optional packages, and progress printed to stdout and
stderr. `quiet()` keeps all of it off the user's terminal for the duration of a call; errors still
arrive, as the exceptions the tools raise.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Iterator


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Drop log records up to WARNING from every logger, ignore warnings, and swallow stdout and stderr."""
    manager = logging.root.manager
    before = manager.disable  # what an enclosing quiet() (or the application) set, restored on exit
    logging.disable(max(before, logging.WARNING))
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(before)
