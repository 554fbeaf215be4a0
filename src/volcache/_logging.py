"""Logging set-up shared by the CLI and the worker: plain lines on stderr, errors as one line."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from ._errors import ConfigError, VolcacheError
from ._settings import Settings


@contextlib.contextmanager
def errors_as_one_line() -> Iterator[None]:
    """Turn volcache's errors into `volcache: error: ...` on stderr and exit status 1.

    With VOLCACHE_DEBUG=1 the exception propagates with its traceback instead.
    """
    try:
        yield
    except VolcacheError as exc:
        try:
            debug = Settings.from_env().debug
        except ConfigError:
            debug = False
        if debug:
            raise
        print(f"volcache: error: {exc}", file=sys.stderr, flush=True)
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
