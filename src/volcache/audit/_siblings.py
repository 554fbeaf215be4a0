"""Other modules of the same project, read (never imported) when a file imports a constant.

`from config import MODEL_DIR` or `from .settings import CACHE` in a worker usually names a
file beside it. The resolver reads that file to learn the constant; this module finds it
(the importing file's folder, then up to two folders above for absolute imports, as a
project root on `sys.path` would) and keeps each file parsed once per run.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._python import PythonModule

_ROOT_LEVELS = 2  # folders above the importing file that an absolute import may start from
_MAX_BYTES = 1_000_000  # a constants module is small; a huge generated file is not read


def sibling_module(source: Path, module: str, level: int, mount_points: tuple[str, ...]) -> PythonModule | None:
    """The parsed module `module` (with `level` leading dots) as imported from `source`."""
    found = _find(str(source.resolve()), module, level)
    return load_module(found, mount_points) if found is not None else None


@lru_cache(maxsize=4096)
def _find(source: str, module: str, level: int) -> str | None:
    """Where `module` lies for an import in file `source`, looked up once per run."""
    folder = Path(source).parent
    if level == 1:
        bases = [folder]
    elif level > 1:
        bases = [folder.parents[level - 2]] if level - 2 < len(folder.parents) else []
    else:
        bases = [folder, *list(folder.parents)[:_ROOT_LEVELS]]
    parts = [p for p in module.split(".") if p]
    for base in bases:
        for candidate in _candidates(base, parts):
            if candidate.is_file() and str(candidate.resolve()) != source:
                return str(candidate)
    return None


def _candidates(base: Path, parts: list[str]) -> list[Path]:
    if not parts:
        return [base / "__init__.py"]
    return [base.joinpath(*parts[:-1], parts[-1] + ".py"), base.joinpath(*parts, "__init__.py")]


@lru_cache(maxsize=256)
def load_module(path: str, mount_points: tuple[str, ...]) -> PythonModule | None:
    """The Python file at `path`, parsed once per run; None when it cannot be read."""
    from ._python import PythonModule

    try:
        file = Path(path)
        if file.stat().st_size > _MAX_BYTES:
            return None
        return PythonModule(path, file.read_text(encoding="utf-8"), mount_points, source=file)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
        return None
