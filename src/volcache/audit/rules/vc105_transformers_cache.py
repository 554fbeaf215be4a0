"""VC105: `TRANSFORMERS_CACHE` set or read in Python (ignored since transformers 5)."""

from __future__ import annotations

from collections.abc import Iterator

from .._finding import Finding
from .._python import PythonModule
from ._base import PythonRule

VARIABLE = "TRANSFORMERS_CACHE"


class TransformersCache(PythonRule):
    """Relying on `TRANSFORMERS_CACHE` in Python.

    ## What it does
    Finds reads and writes of the `TRANSFORMERS_CACHE` environment variable:
    `os.environ["TRANSFORMERS_CACHE"]`, `os.getenv`, `os.environ.get`, `setdefault`,
    `update`, `os.putenv` and `"TRANSFORMERS_CACHE" in os.environ`. A warning.

    ## Why is this bad?
    transformers 5 no longer reads `TRANSFORMERS_CACHE` (4.x deprecated it): models are
    cached where `HF_HUB_CACHE` (or `HF_HOME/hub`) says. Code that sets only
    `TRANSFORMERS_CACHE` downloads into `~/.cache/huggingface` on the container disk;
    code that reads it gets a folder the library does not use.

    ## Example
    ```python
    os.environ["TRANSFORMERS_CACHE"] = "/runpod-volume/models"
    ```

    ## Use instead
    ```python
    os.environ["HF_HUB_CACHE"] = "/runpod-volume/models/hub"  # before any HF import
    ```
    Keep `TRANSFORMERS_CACHE` only beside `HF_HUB_CACHE`, for transformers < 5, and
    silence this warning there with `# volcache: ignore[VC105]`.

    ## When it stays silent
    For the name in other places (a string in a list or a log message) and for
    variable names it cannot read from the file.
    """

    code = "VC105"
    name = "transformers-cache"
    summary = "TRANSFORMERS_CACHE is ignored since transformers 5"
    fix = "use HF_HUB_CACHE (or HF_HOME); keep TRANSFORMERS_CACHE only for transformers < 5"
    severity = "warning"
    triggers = ("TRANSFORMERS",)

    def check(self, module: PythonModule) -> Iterator[Finding]:
        for access in module.resolver.env_accesses():
            if access.name == VARIABLE:
                verb = "set" if access.writes else "read"
                message = f"{VARIABLE} is {verb} here but ignored since transformers 5: the cache follows HF_HUB_CACHE"
                yield self.at(module, access.node, message)
