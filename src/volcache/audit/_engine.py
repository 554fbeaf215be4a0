"""Runs the selected rules over files and applies inline suppressions."""

from __future__ import annotations

import dataclasses
import tokenize
from collections.abc import Iterable, Sequence
from pathlib import Path

from ._dockerfile import Dockerfile
from ._files import Kind, iter_files
from ._finding import Finding
from ._locations import DEFAULT_MOUNT_POINTS
from ._python import PythonModule
from ._suppress import Suppressions
from .rules import ALL_RULES, PARSE_ERROR, DockerfileRule, PythonRule, Rule
from .rules import PARSE_ERROR_FIX as _PARSE_ERROR_FIX

ALL_CODES: tuple[str, ...] = (PARSE_ERROR, *(r.code for r in ALL_RULES))


def unknown_selectors(selectors: Iterable[str]) -> list[str]:
    """The selectors (codes or prefixes) that match no code."""
    return [s for s in selectors if not any(code.startswith(s.upper()) for code in ALL_CODES)]


@dataclasses.dataclass(frozen=True)
class AuditOptions:
    """What to check. `select`/`ignore` hold codes or prefixes (`VC1`); an empty `select`
    means every rule. `exclude` globs are relative to `root`. VC001 (a file that cannot
    be parsed) is always reported unless ignored."""

    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    root: Path | None = None
    mount_points: tuple[str, ...] = DEFAULT_MOUNT_POINTS

    def enabled(self, code: str) -> bool:
        if any(code.startswith(s.upper()) for s in self.ignore):
            return False
        return code == PARSE_ERROR or not self.select or any(code.startswith(s.upper()) for s in self.select)

    def rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in ALL_RULES if self.enabled(r.code))


@dataclasses.dataclass(frozen=True)
class AuditReport:
    """The findings, sorted, and what was checked."""

    findings: tuple[Finding, ...]
    files_checked: int
    rules: tuple[Rule, ...]
    skipped: tuple[Path, ...] = ()


def _display(path: Path) -> str:
    return path.as_posix()


def audit_source(text: str, path: str, kind: Kind, options: AuditOptions | None = None) -> list[Finding]:
    """The findings in one file's text; `path` is how they name it."""
    options = options or AuditOptions()
    rules = [r for r in options.rules() if r.language == kind and r.may_apply(text)]
    try:
        found, suppressions = _check(text, path, kind, rules, options)
    except SyntaxError as exc:
        return _parse_error(path, exc, options)
    except RecursionError:  # generated code nested deeper than the interpreter's stack
        return _parse_error(path, SyntaxError("nested too deeply to read"), options)
    return sorted({f for f in found if not suppressions.covers(f.line, f.code)})


def _check(
    text: str, path: str, kind: Kind, rules: list[Rule], options: AuditOptions
) -> tuple[list[Finding], Suppressions]:
    if kind == "python":
        try:
            module = PythonModule(path, text, options.mount_points)
        except ValueError as exc:  # a NUL byte in the source
            raise SyntaxError(str(exc)) from exc
        return [f for r in rules if isinstance(r, PythonRule) for f in r.check(module)], module.suppressions
    dockerfile = Dockerfile(path, text, options.mount_points)
    return [f for r in rules if isinstance(r, DockerfileRule) for f in r.check(dockerfile)], dockerfile.suppressions


def _parse_error(path: str, exc: Exception, options: AuditOptions) -> list[Finding]:
    if not options.enabled(PARSE_ERROR):
        return []
    line = getattr(exc, "lineno", None) or 1
    col = getattr(exc, "offset", None) or 1
    reason = getattr(exc, "msg", None) or str(exc)
    return [Finding(path, line, col, PARSE_ERROR, f"cannot parse this file ({reason}): not audited", _PARSE_ERROR_FIX)]


def _read(path: Path, kind: Kind) -> str:
    if kind == "python":
        with tokenize.open(path) as handle:  # honours a PEP 263 coding line
            return handle.read()
    return path.read_text(encoding="utf-8")


def audit_paths(paths: Sequence[Path], options: AuditOptions | None = None) -> AuditReport:
    """Audit files and folders (recursively) with `options`."""
    options = options or AuditOptions()
    findings: list[Finding] = []
    skipped: list[Path] = []
    checked = 0
    for path, kind in iter_files(paths, options.exclude, options.root):
        if kind is None:
            skipped.append(path)
            continue
        checked += 1
        try:
            text = _read(path, kind)
        except (OSError, UnicodeDecodeError, SyntaxError) as exc:
            findings.extend(_parse_error(_display(path), exc, options))
            continue
        findings.extend(audit_source(text, _display(path), kind, options))
    return AuditReport(tuple(sorted(findings)), checked, options.rules(), tuple(skipped))
