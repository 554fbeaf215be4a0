"""`[tool.volcache.audit]` in the nearest pyproject.toml that has the section.

```toml
[tool.volcache.audit]
select = ["VC1", "VC201"]        # codes or prefixes; default: every rule
ignore = ["VC105"]               # codes or prefixes to skip
exclude = ["tests/fixtures", "**/legacy_*.py"]   # globs, relative to this file's folder
mount-points = ["/runpod-volume"]                # where the network volume is mounted
```
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

SECTION = ("tool", "volcache", "audit")
_KEYS = ("select", "ignore", "exclude", "mount-points")


class ConfigProblem(ValueError):
    """The configuration section cannot be used; the message says where and why."""


@dataclasses.dataclass(frozen=True)
class FileConfig:
    """What the configuration file says; `source` is None when none was found."""

    source: Path | None = None
    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    mount_points: tuple[str, ...] | None = None
    note: str | None = None


def _parse_toml(path: Path) -> dict[str, Any] | None:
    """The TOML document, or None where no TOML parser is installed (Python 3.10 without tomli)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            return None
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigProblem(f"{path}: cannot read it as TOML: {exc}") from exc


def _section(document: dict[str, Any]) -> dict[str, Any] | None:
    node: Any = document
    for key in SECTION:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, dict) else None


def _strings(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigProblem(f'{path}: [tool.volcache.audit] {key} must be a list of strings, e.g. {key} = ["VC101"]')
    return tuple(value)


def load_config(start: Path) -> FileConfig:
    """The configuration that applies to files under `start`: the nearest pyproject.toml,
    from `start` upwards, that has a `[tool.volcache.audit]` section."""
    folder = start.resolve()
    if not folder.is_dir():
        folder = folder.parent
    for candidate in (folder, *folder.parents):
        pyproject = candidate / "pyproject.toml"
        if not pyproject.is_file():
            continue
        document = _parse_toml(pyproject)
        if document is None:
            return FileConfig(note=f"{pyproject} not read: install tomli to use [tool.volcache.audit] on Python 3.10")
        section = _section(document)
        if section is not None:
            return _config(pyproject, section)
    return FileConfig()


def _config(path: Path, section: dict[str, Any]) -> FileConfig:
    unknown = sorted(set(section) - set(_KEYS))
    if unknown:
        raise ConfigProblem(
            f"{path}: unknown key(s) in [tool.volcache.audit]: {', '.join(unknown)}; known: {', '.join(_KEYS)}"
        )
    values = {key: _strings(path, key, section[key]) for key in _KEYS if key in section}
    return FileConfig(
        source=path,
        select=values.get("select"),
        ignore=values.get("ignore", ()),
        exclude=values.get("exclude", ()),
        mount_points=values.get("mount-points"),
    )
