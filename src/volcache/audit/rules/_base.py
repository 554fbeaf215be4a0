"""The shape every rule has: a stable code, a documented docstring and a `check`."""

from __future__ import annotations

import ast
import inspect
import posixpath
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar, Literal

from .._dockerfile import Dockerfile, Step
from .._finding import Finding, Severity
from .._locations import UNKNOWN
from .._python import PythonModule
from .._shell import SHELLS, SimpleCommand, Word, split_commands

Language = Literal["python", "dockerfile", "shell"]

DOC_SECTIONS = ("What it does", "Why is this bad?", "Example", "Use instead", "When it stays silent")


class Rule(ABC):
    """A rule. Its docstring is its documentation, in the sections of `DOC_SECTIONS`."""

    code: ClassVar[str]
    name: ClassVar[str]
    summary: ClassVar[str]
    fix: ClassVar[str]
    severity: ClassVar[Severity] = "error"
    language: ClassVar[Language]
    # Other kinds of file the rule reads too (a Python rule may read RUN lines and scripts).
    also_reads: ClassVar[tuple[Language, ...]] = ()
    # A file that contains none of these strings cannot hold a finding of this rule, so
    # the rule is not run on it (a speed-up only); empty means "always run".
    triggers: ClassVar[tuple[str, ...]] = ()

    def may_apply(self, text: str) -> bool:
        return not self.triggers or any(t in text for t in self.triggers)

    def reads(self, kind: str) -> bool:
        """Whether the rule reads files of `kind` (`python`, `dockerfile`, `shell`)."""
        return kind == self.language or kind in self.also_reads

    @property
    def languages(self) -> str:
        """What the rule reads, as the docs show it: `python`, `dockerfile, shell`."""
        return ", ".join((self.language, *self.also_reads))

    @classmethod
    def doc(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")

    @classmethod
    def section(cls, title: str) -> str:
        """The text under `## title` in the docstring."""
        match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", cls.doc(), re.S | re.M)
        return match.group(1).strip() if match else ""

    def _finding(self, path: str, line: int, col: int, message: str, fix: str | None) -> Finding:
        return Finding(path, line, col, self.code, message, fix or self.fix, self.severity)


class PythonRule(Rule):
    """A rule over a parsed Python module."""

    language: ClassVar[Language] = "python"

    @abstractmethod
    def check(self, module: PythonModule) -> Iterator[Finding]:
        """The findings of this rule in `module`."""

    def at(self, module: PythonModule, node: ast.AST, message: str, fix: str | None = None) -> Finding:
        return self._finding(module.path, node.lineno, module.col(node), message, fix)  # type: ignore[attr-defined]

    def check_commands(self, dockerfile: Dockerfile) -> Iterator[Finding]:
        """The findings in the RUN lines of a Dockerfile or the commands of a script, for a
        rule that `also_reads` them."""
        return iter(())

    def at_step(self, dockerfile: Dockerfile, step: Step, offset: int, message: str) -> Finding:
        line, col = step.instruction.where(offset)
        return self._finding(dockerfile.path, line, col, message, None)


class DockerfileRule(Rule):
    """A rule over a read Dockerfile."""

    language: ClassVar[Language] = "dockerfile"

    @abstractmethod
    def check(self, dockerfile: Dockerfile) -> Iterator[Finding]:
        """The findings of this rule in `dockerfile`."""

    def at(self, dockerfile: Dockerfile, step: Step, offset: int, message: str, fix: str | None = None) -> Finding:
        line, col = step.instruction.where(offset)
        return self._finding(dockerfile.path, line, col, message, fix)


def describe(module: PythonModule, expr: ast.expr | None, value: str | None) -> str:
    """How a finding names a path argument: its resolved value, else its source text."""
    if value is not None and value.strip(UNKNOWN + "/"):
        return repr(value)
    return ast.unparse(expr) if expr is not None else "?"


def argument(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    """The argument at position `index` or named `keyword`, if the call passes it."""
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    if index < len(call.args) and not any(isinstance(a, ast.Starred) for a in call.args[: index + 1]):
        return call.args[index]
    return None


_RUNNERS = frozenset(
    {
        "subprocess.run",
        "subprocess.call",
        "subprocess.check_call",
        "subprocess.check_output",
        "subprocess.Popen",
        "subprocess.getoutput",
        "subprocess.getstatusoutput",
        "os.system",
        "os.popen",
        "asyncio.create_subprocess_shell",
    }
)
_EXEC = "asyncio.create_subprocess_exec"


def is_runner(name: str) -> bool:
    """Whether `name` runs a command line."""
    return name in _RUNNERS or name == _EXEC


def shell_commands(module: PythonModule, call: ast.Call, name: str) -> list[SimpleCommand]:
    """The commands a `subprocess`/`os.system` call runs, as far as the file says: the list
    form (`["cp", "-r", src, dst]`) or a shell string (also behind `sh -c`)."""
    resolver = module.resolver
    if name == _EXEC:
        elements = list(call.args)
    else:
        first = argument(call, 0, "args") or argument(call, 0, "cmd")
        sequence = resolver.sequence(first) if first is not None else None
        if first is None or sequence is None:
            text = resolver.value(first) if first is not None else None
            return split_commands(text) if text else []
        elements = sequence
    if any(isinstance(e, ast.Starred) for e in elements):
        return []
    argv = [resolver.value(e) or UNKNOWN for e in elements]
    if len(argv) >= 3 and posixpath.basename(argv[0]) in SHELLS and argv[1] == "-c":
        return split_commands(argv[2])
    return [SimpleCommand(tuple(Word(a, 0) for a in argv))] if argv else []
