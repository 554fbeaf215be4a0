"""VC104: a cache variable set after a Hugging Face library was imported in the same module."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from .._finding import Finding
from .._python import PythonModule, Scope
from ._base import PythonRule

# Libraries that read (or import huggingface_hub, which reads) the cache paths at import.
HF_LIBRARIES = frozenset({"transformers", "huggingface_hub", "sentence_transformers", "diffusers", "datasets"})
# Variables read once, at import. TORCH_HOME and SENTENCE_TRANSFORMERS_HOME are read at
# each call, so setting them late works and is not reported.
IMPORT_TIME_VARIABLES = frozenset(
    {
        "HF_HOME",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_ASSETS_CACHE",
        "HUGGINGFACE_ASSETS_CACHE",
        "HF_XET_CACHE",
        "TRANSFORMERS_CACHE",
        "PYTORCH_TRANSFORMERS_CACHE",
        "HF_DATASETS_CACHE",
    }
)
_BLOCKS = ("body", "orelse", "finalbody", "handlers")


class CacheEnvAfterImport(PythonRule):
    """Setting a cache variable after a Hugging Face library is imported.

    ## What it does
    Finds `os.environ["HF_HOME"] = ...` (and `setdefault`, `update`, `os.putenv`) of a
    variable the Hugging Face libraries read at import (`HF_HOME`, `HF_HUB_CACHE`,
    `HUGGINGFACE_HUB_CACHE`, `HF_ASSETS_CACHE`, `HF_XET_CACHE`, `TRANSFORMERS_CACHE`,
    `HF_DATASETS_CACHE`, ...) that comes after `transformers`, `huggingface_hub`,
    `sentence_transformers`, `diffusers` or `datasets` is imported in the same module:
    later in the module body, or anywhere in a function below a module-level import, or
    below an import in the same function.

    ## Why is this bad?
    `huggingface_hub` computes its cache paths once, when it is imported. A later change
    of the environment has no effect: the worker silently downloads into
    `~/.cache/huggingface` on the container disk, not onto the volume (contract I7). This
    is the latent bug of the seed's fixed handler when its module imports `transformers`
    at the top.

    ## Example
    ```python
    from transformers import AutoModel

    def setup_cache_hierarchy():
        os.environ["HF_HOME"] = "/runpod-volume/models"  # too late
    ```

    ## Use instead
    Set the variables where the process starts: `ENV HF_HOME=...` in the Dockerfile, or at
    the top of the entry module before the first Hugging Face import.

    ## When it stays silent
    For `TORCH_HOME` and `SENTENCE_TRANSFORMERS_HOME` (read at each call), for imports
    under `if TYPE_CHECKING:`, for a function that is defined above the import (it may
    run before it), and for variable names it cannot read from the file.
    """

    code = "VC104"
    name = "cache-env-after-import"
    summary = "cache variable set after a Hugging Face library was imported"
    fix = "set cache variables before the first Hugging Face import (Dockerfile ENV or the top of the entry module)"
    triggers = tuple(HF_LIBRARIES)

    def check(self, module: PythonModule) -> Iterator[Finding]:
        imports: dict[int, list[tuple[int, str]]] = {}
        for access in module.resolver.env_accesses():
            if not access.writes or access.name not in IMPORT_TIME_VARIABLES:
                continue
            line = access.node.lineno  # type: ignore[attr-defined]
            earlier = self._import_before(module, module.scope_of(access.node), line, imports)
            if earlier is not None:
                import_line, library = earlier
                message = (
                    f"{access.name} is set after `{library}` is imported (line {import_line}): "
                    "the Hugging Face libraries read their cache paths at import, so this has no effect"
                )
                yield self.at(module, access.node, message)

    def _import_before(
        self, module: PythonModule, scope: Scope, line: int, cache: dict[int, list[tuple[int, str]]]
    ) -> tuple[int, str] | None:
        current: Scope | None = scope
        while current is not None:
            key = id(current.node)
            if key not in cache:
                cache[key] = sorted(_hf_imports(getattr(current.node, "body", [])))
            earlier = [i for i in cache[key] if i[0] < line]
            if earlier:
                return earlier[0]
            current = current.parent
        return None


def _hf_imports(body: list[ast.stmt]) -> Iterator[tuple[int, str]]:
    """HF imports run by this body itself: inside if/try/with/loops, not defs or classes."""
    for stmt in body:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.name.split(".")[0] in HF_LIBRARIES:
                    yield stmt.lineno, alias.name.split(".")[0]
        elif isinstance(stmt, ast.ImportFrom):
            top = (stmt.module or "").split(".")[0]
            if stmt.level == 0 and top in HF_LIBRARIES:
                yield stmt.lineno, top
        elif isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
            yield from _hf_imports(stmt.orelse)
        elif not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for block in _BLOCKS:
                for child in getattr(stmt, block, []):
                    yield from _hf_imports(child.body if isinstance(child, ast.ExceptHandler) else [child])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )
