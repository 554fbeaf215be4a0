"""Python inside a Dockerfile or a shell script: `python -c "..."` code, a `RUN python3
<<EOF` heredoc, and the context's Python files that a `RUN` executes. All are read with
the Python reader, so every Python rule applies to them; a finding in embedded code is
placed on the Dockerfile's line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from functools import lru_cache

from ._context import ContextFile
from ._dockerfile import Dockerfile, Step
from ._python import PythonModule
from ._shell import PYTHON_PROGRAM, Word
from ._siblings import load_module


@dataclasses.dataclass(frozen=True)
class Embedded:
    """`python -c CODE` at `step`; `word` is the CODE word."""

    module: PythonModule
    step: Step
    word: Word


def embedded_module(dockerfile: Dockerfile, code: str) -> PythonModule | None:
    """`code` parsed as a module named like the Dockerfile, or None if it is not Python."""
    return _parsed(dockerfile.path, code, dockerfile.mount_points)


@lru_cache(maxsize=512)
def _parsed(path: str, code: str, mount_points: tuple[str, ...]) -> PythonModule | None:
    try:
        return PythonModule(path, code, mount_points)
    except (SyntaxError, ValueError, RecursionError):
        return None  # shell text that only looks like a `-c` argument; nothing to vouch for


def script_module(file: ContextFile, mount_points: tuple[str, ...]) -> PythonModule | None:
    """A context Python file, parsed once per run."""
    return load_module(str(file.path), mount_points) if file.kind == "python" else None


def embedded_python(dockerfile: Dockerfile) -> Iterator[Embedded]:
    """Every `python -c CODE` of the file's RUN steps whose CODE parses."""
    for step in dockerfile.steps:
        if step.keyword != "RUN":
            continue
        heredoc = dockerfile.python_heredoc(step)
        if heredoc is not None and (module := embedded_module(dockerfile, heredoc[0])) is not None:
            yield Embedded(module, step, Word(heredoc[0], heredoc[1]))
        for command in dockerfile.run_commands(step):
            texts = [w.text for w in command.argv]
            if not texts or not PYTHON_PROGRAM.fullmatch(command.program) or "-c" not in texts[1:-1]:
                continue
            word = command.argv[texts.index("-c") + 1]
            module = embedded_module(dockerfile, word.text)
            if module is not None:
                yield Embedded(module, step, word)


def position(embedded: Embedded, line: int, col: int) -> tuple[int, int]:
    """Where line `line`, column `col` of the code is in the Dockerfile: found by its text
    after the code word's start, else the code word itself (quotes and escapes may have
    changed the text)."""
    instruction = embedded.step.instruction
    code_lines = embedded.module.lines
    text = code_lines[line - 1] if 0 < line <= len(code_lines) else ""
    at = instruction.args.find(text, embedded.word.offset) if text.strip() else -1
    if at < 0 or "\n" in text:
        return instruction.where(embedded.word.offset)
    return instruction.where(at + col - 1)
