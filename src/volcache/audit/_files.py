"""Which files `volcache audit` reads: Python files, Dockerfiles and shell scripts, minus skipped folders."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

Kind = Literal["python", "dockerfile", "shell"]

SKIP_DIRS = frozenset(
    {".venv", "venv", ".git", "node_modules", "__pycache__", "build", "dist", ".tox", ".nox",
     ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)  # fmt: skip


# Files named like a Dockerfile that are about one, not one.
_DOCUMENTS = (".md", ".txt", ".rst", ".json", ".yaml", ".yml", ".toml", ".html")


def file_kind(path: Path) -> Kind | None:
    """`python` for `*.py`; `shell` for `*.sh` and `*.bash`; `dockerfile` for `Dockerfile`,
    `Dockerfile.*`, `Dockerfile-*`, `Dockerfile_*`, `*.Dockerfile`, and the same with
    `Containerfile` (any case), except documents about them (`Dockerfile.md`); None for
    anything else."""
    name = path.name.lower()
    if name.endswith(".py"):
        return "python"
    if name.endswith((".sh", ".bash")):
        return "shell"
    if name.endswith(".dockerignore"):
        return None
    for base in ("dockerfile", "containerfile"):
        if name == base or name.endswith("." + base):
            return "dockerfile"
        if name.startswith((base + ".", base + "-", base + "_")) and not name.endswith(_DOCUMENTS):
            return "dockerfile"
    return None


def is_excluded(path: Path, exclude: Iterable[str], root: Path | None) -> bool:
    """Whether a glob of `exclude` matches `path` or a folder above it, by its path
    relative to `root` (where the configuration lives) or by its name."""
    patterns = [p.rstrip("/") for p in exclude]
    if not patterns:
        return False
    absolute = path.resolve()
    try:
        relative = absolute.relative_to(root.resolve()) if root else path
    except ValueError:
        relative = path
    parts = relative.parts
    for index in range(len(parts)):
        prefix = "/".join(parts[: index + 1])
        if any(fnmatch.fnmatchcase(prefix, p) or fnmatch.fnmatchcase(parts[index], p) for p in patterns):
            return True
    return False


def iter_files(
    paths: Iterable[Path], exclude: Iterable[str] = (), root: Path | None = None
) -> Iterator[tuple[Path, Kind | None]]:
    """Files to audit, in a stable order, each once. A file named on the command line is
    yielded even when its kind is unknown (None), so the caller can say it was skipped."""
    exclude = tuple(exclude)
    seen: set[Path] = set()
    for path in paths:
        candidates = [path] if not path.is_dir() else _walk(path)
        for candidate in candidates:
            key = candidate.resolve()
            if key in seen or is_excluded(candidate, exclude, root):
                continue
            seen.add(key)
            kind = file_kind(candidate)
            if kind is not None or candidate is path:
                yield candidate, kind


def _walk(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(filenames):
            candidate = Path(dirpath) / name
            if file_kind(candidate) is not None:
                yield candidate
