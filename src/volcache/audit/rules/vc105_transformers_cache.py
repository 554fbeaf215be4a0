"""VC105: `TRANSFORMERS_CACHE` read, relied on, or split from the hub cache in Python."""

from __future__ import annotations

import ast
import posixpath
from collections.abc import Iterator

from .._finding import Finding
from .._locations import UNKNOWN
from .._python import PythonModule
from .._resolve import EnvAccess
from ._base import PythonRule

VARIABLE = "TRANSFORMERS_CACHE"
HUB_VARIABLES = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")


class TransformersCache(PythonRule):
    """Relying on `TRANSFORMERS_CACHE` in Python.

    ## What it does
    Finds reads of the `TRANSFORMERS_CACHE` environment variable (`os.environ[...]`,
    `os.getenv`, `os.environ.get`, `"TRANSFORMERS_CACHE" in os.environ`), and writes
    (`os.environ[...] =`, `setdefault`, `update`, `os.putenv`) that something relies on:
    the module sets neither `HF_HUB_CACHE` nor `HF_HOME`, or it sets `TRANSFORMERS_CACHE`
    to a folder other than the hub cache (`HF_HUB_CACHE`, else `HF_HOME/hub`). A warning.

    ## Why is this bad?
    transformers 5 no longer reads `TRANSFORMERS_CACHE` (4.x deprecated it): models are
    cached where `HF_HUB_CACHE` (or `HF_HOME/hub`) says. Code that sets only
    `TRANSFORMERS_CACHE` downloads into `~/.cache/huggingface` on the container disk;
    code that sets it to another folder than the hub cache makes transformers 4 and 5
    write to different places (two copies across an upgrade); code that reads it gets a
    folder the library does not use.

    ## Example
    ```python
    os.environ["TRANSFORMERS_CACHE"] = "/runpod-volume/models"
    os.environ["HF_HOME"] = "/runpod-volume/models"  # hub cache: /runpod-volume/models/hub
    ```

    ## Use instead
    ```python
    os.environ["HF_HUB_CACHE"] = "/runpod-volume/models/hub"  # before any HF import
    os.environ["TRANSFORMERS_CACHE"] = "/runpod-volume/models/hub"  # transformers 4 only: the same folder
    ```

    ## When it stays silent
    For a `TRANSFORMERS_CACHE` set to the same folder as the hub cache (redundant, and
    right for transformers 4), for values it cannot compare (built at run time), for the
    name in other places (a string in a list or a log message), and for variable names it
    cannot read from the file.
    """

    code = "VC105"
    name = "transformers-cache"
    summary = "TRANSFORMERS_CACHE relied on, or split from the hub cache"
    fix = "use HF_HUB_CACHE (or HF_HOME); keep TRANSFORMERS_CACHE only for transformers < 5, set to the hub cache"
    severity = "warning"
    triggers = ("TRANSFORMERS",)

    def check(self, module: PythonModule) -> Iterator[Finding]:
        accesses = module.resolver.env_accesses()
        hub = _hub_cache(module, accesses)
        for access in accesses:
            if access.name != VARIABLE:
                continue
            if not access.writes:
                message = f"{VARIABLE} is read here but ignored since transformers 5: the cache follows HF_HUB_CACHE"
            elif hub is None:
                message = (
                    f"{VARIABLE} is set but neither HF_HUB_CACHE nor HF_HOME: transformers 5 ignores it "
                    "and caches in ~/.cache/huggingface on the container disk"
                )
            else:
                split = _split(module, access.value, hub)
                if split is None:
                    continue
                message = f"{VARIABLE} is {split}: transformers 4 and 5 cache in different places"
            yield self.at(module, access.node, message)


# The hub cache a module sets: (variable, value expression, path suffix below it).
HubCache = tuple[str, ast.expr | None, str]


def _hub_cache(module: PythonModule, accesses: list[EnvAccess]) -> HubCache | None:
    writes = {a.name: a.value for a in accesses if a.writes}
    for name in HUB_VARIABLES:
        if name in writes:
            return name, writes[name], ""
    return ("HF_HOME", writes["HF_HOME"], "hub") if "HF_HOME" in writes else None


def _split(module: PythonModule, value: ast.expr | None, hub: HubCache) -> str | None:
    """How `TRANSFORMERS_CACHE`'s value is shown when it differs from the hub cache; None
    when it is the same folder or the two cannot be compared."""
    name, hub_expr, below = hub
    if value is None or hub_expr is None:
        return None
    mine, theirs = module.resolver.value(value), module.resolver.value(hub_expr)
    comparable = mine is not None and theirs is not None and not any(c in mine + theirs for c in (UNKNOWN, "$"))
    if comparable:
        assert mine is not None and theirs is not None
        theirs = posixpath.join(theirs, below) if below else theirs
        if posixpath.normpath(mine) == posixpath.normpath(theirs):
            return None
        return f"{mine!r}, not the hub cache {theirs!r}"
    if ast.dump(value) == ast.dump(hub_expr):  # the same expression: the same folder
        return None if not below else f"the value of {name}, not the hub cache {name}/{below}"
    return None
