"""Logging set-up shared by the CLI and the worker: plain lines on stderr, errors as one line."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
from collections.abc import Iterator

from ._errors import VolcacheError, one_line


@dataclasses.dataclass
class ErrorBoundary:
    """What the boundary knows: `debug` is set by whoever reads the settings (they are read once)."""

    debug: bool = False


@contextlib.contextmanager
def errors_as_one_line(debug: bool = False) -> Iterator[ErrorBoundary]:
    """Turn volcache's errors into `volcache: error: ...` (built by `one_line`) on stderr and exit status 1.

    With `boundary.debug` set (from `Settings.debug`, VOLCACHE_DEBUG=1) the exception propagates
    with its traceback instead. The environment is not read here.
    """
    boundary = ErrorBoundary(debug)
    try:
        yield boundary
    except VolcacheError as exc:
        if boundary.debug:
            raise
        print(f"volcache: error: {one_line(exc)}", file=sys.stderr, flush=True)
        sys.exit(1)


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger("volcache")
    if any(getattr(h, "_volcache", False) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler._volcache = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
