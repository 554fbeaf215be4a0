"""Runs the selected rules over files and applies inline suppressions.

A Dockerfile brings the files of its build context that the image runs (a `RUN python
/fetch.py`, an `ENTRYPOINT ["/start.sh"]`): they are audited too, a script with the
variables the image gives it, and each under its own path.
"""

from __future__ import annotations

import dataclasses
import tokenize
from collections.abc import Iterable, Sequence
from pathlib import Path

from ._context import RunScript, scripts_run
from ._dockerfile import Dockerfile
from ._embedded import embedded_python, position
from ._files import Kind, is_excluded, iter_files
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


def audit_source(
    text: str,
    path: str,
    kind: Kind,
    options: AuditOptions | None = None,
    *,
    source: Path | None = None,
    env: dict[str, str] | None = None,
    workdir: str = "/",
) -> list[Finding]:
    """The findings in one file's text; `path` is how they name it. `source` is the file on
    disk, when there is one: sibling modules and a Dockerfile's build context are read from
    beside it. `env` and `workdir` are what a shell script starts with."""
    options = options or AuditOptions()
    try:
        found, suppressions = _check(text, path, kind, options, source, env, workdir)
    except SyntaxError as exc:
        return _parse_error(path, exc, options)
    except RecursionError:  # generated code nested deeper than the interpreter's stack
        return _parse_error(path, SyntaxError("nested too deeply to read"), options)
    return sorted({f for f in found if not suppressions.covers(f.line, f.code)})


def _check(
    text: str,
    path: str,
    kind: Kind,
    options: AuditOptions,
    source: Path | None,
    env: dict[str, str] | None,
    workdir: str,
) -> tuple[list[Finding], Suppressions]:
    rules = [r for r in options.rules() if r.reads(kind) and r.may_apply(text)]
    if kind == "python":
        try:
            module = PythonModule(path, text, options.mount_points, source=source)
        except ValueError as exc:  # a NUL byte in the source
            raise SyntaxError(str(exc)) from exc
        return [f for r in rules if isinstance(r, PythonRule) for f in r.check(module)], module.suppressions
    context = source.parent if source is not None and kind == "dockerfile" else None
    dockerfile = Dockerfile(path, text, options.mount_points, context, script=kind == "shell", env=env, workdir=workdir)
    found: list[Finding] = []
    for rule in rules:
        found.extend(rule.check(dockerfile) if isinstance(rule, DockerfileRule) else _commands_of(rule, dockerfile))
    found.extend(_embedded_findings(dockerfile, options))
    return found, dockerfile.suppressions


def _commands_of(rule: Rule, dockerfile: Dockerfile) -> list[Finding]:
    return list(rule.check_commands(dockerfile)) if isinstance(rule, PythonRule) else []


def _embedded_findings(dockerfile: Dockerfile, options: AuditOptions) -> list[Finding]:
    """Every Python rule over the `python -c` code of the RUN lines, placed on their lines."""
    python_rules = [r for r in options.rules() if isinstance(r, PythonRule)]
    found = []
    for embedded in embedded_python(dockerfile):
        for rule in python_rules:
            if rule.may_apply(embedded.module.text):
                for finding in rule.check(embedded.module):
                    line, col = position(embedded, finding.line, finding.col)
                    found.append(dataclasses.replace(finding, line=line, col=col))
    return found


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


def _audit_file(
    path: Path, kind: Kind, display: str, options: AuditOptions, script: RunScript | None = None
) -> list[Finding]:
    try:
        text = _read(path, kind)
    except (OSError, UnicodeDecodeError, SyntaxError) as exc:
        return _parse_error(display, exc, options)
    if script is None:
        return audit_source(text, display, kind, options, source=path)
    step = script.step
    env = script.step.env
    workdir = step.workdir
    if script.at_start:  # run when the container starts: with what the stage ends with
        env = script.dockerfile.stage_env(step.stage)
        workdir = script.dockerfile.stage_workdir(step.stage)
    return audit_source(text, display, kind, options, source=path, env=env, workdir=workdir)


def _scripts_of(path: Path, display: str, options: AuditOptions) -> list[RunScript]:
    """The build context files a Dockerfile's image runs."""
    try:
        text = path.read_text(encoding="utf-8")
        dockerfile = Dockerfile(display, text, options.mount_points, path.parent)
        return [s for s in scripts_run(dockerfile) if not is_excluded(s.file.path, options.exclude, options.root)]
    except (OSError, UnicodeDecodeError, ValueError):
        return []


def audit_paths(paths: Sequence[Path], options: AuditOptions | None = None) -> AuditReport:
    """Audit files and folders (recursively) with `options`."""
    options = options or AuditOptions()
    results: dict[Path, list[Finding]] = {}
    from_images: set[Path] = set()  # scripts already audited with the variables of an image
    skipped: list[Path] = []
    for path, kind in iter_files(paths, options.exclude, options.root):
        if kind is None:
            skipped.append(path)
            continue
        key = path.resolve()
        if key in from_images:
            continue
        results[key] = _audit_file(path, kind, _display(path), options)
        if kind != "dockerfile":
            continue
        for script in _scripts_of(path, _display(path), options):
            script_key = script.file.path.resolve()
            found = _audit_file(script.file.path, script.file.kind, script.file.display, options, script)
            earlier = results.get(script_key, []) if script_key in from_images else []
            results[script_key] = sorted(set(earlier) | set(found))
            from_images.add(script_key)
    findings = sorted(f for found in results.values() for f in found)
    return AuditReport(tuple(findings), len(results), options.rules(), tuple(skipped))
