"""Parsing Python that is newer than the interpreter running the audit, as far as it can be.

`ast` only knows the grammar of the Python it runs on. Files written for a newer one are
common in worker repositories: a backslash or a comment inside an f-string expression, or
the same quotes nested in one, are legal from 3.12 (PEP 701). When the running grammar
rejects a file, the f-strings it cannot read are blanked (same length and lines, so every
position stays right) and the file is parsed again; what was inside them is unknown, which
the rules treat as "say nothing". When the file still cannot be parsed, the error says
which Python version it needs, where that can be told.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize

_RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"
# What the running grammar says about constructs of a newer one, and that version.
_NEWER_MESSAGES: tuple[tuple[str, str], ...] = (
    ("f-string expression part cannot include a backslash", "3.12"),
    ("f-string expression part cannot include '#'", "3.12"),
    ("f-string: expecting '}'", "3.12"),
    ("f-string: unmatched", "3.12"),
)
_NEWER_LINES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^\s*type\s+[A-Za-z_]\w*\s*(\[.*\])?\s*="), "3.12"),  # PEP 695 type alias
    (re.compile(r"^\s*(async\s+)?def\s+\w+\s*\["), "3.12"),  # PEP 695 generic function
    (re.compile(r"^\s*class\s+\w+\s*\["), "3.12"),  # PEP 695 generic class
    (re.compile(r"^\s*except\s*\*"), "3.11"),  # PEP 654 exception groups
)


def parse(text: str, filename: str) -> ast.Module:
    """The module's tree, with the newest grammar available; a SyntaxError that says which
    Python the file needs when even that cannot read it."""
    try:
        return ast.parse(text, filename=filename)
    except SyntaxError as exc:
        error = exc
    blanked = _blank_unreadable_fstrings(text)
    if blanked is not None:
        try:
            return ast.parse(blanked, filename=filename)
        except SyntaxError:
            pass
    needed = needed_version(error, text)
    if needed is not None and _older(_RUNNING, needed):
        message = f"{error.msg}; the file needs Python {needed} or newer, the audit runs on {_RUNNING}"
        raise SyntaxError(message, (filename, error.lineno, error.offset, error.text)) from error
    raise error


def needed_version(error: SyntaxError, text: str) -> str | None:
    """The Python version whose grammar has the construct `error` points at, if known."""
    message = error.msg or ""
    for fragment, version in _NEWER_MESSAGES:
        if fragment in message:
            return version
    lines = text.splitlines()
    candidates = [n for n in (error.lineno, getattr(error, "end_lineno", None)) if isinstance(n, int) and n]
    for number in candidates:
        line = lines[number - 1] if number and 0 < number <= len(lines) else ""
        for pattern, version in _NEWER_LINES:
            if pattern.match(line):
                return version
    return None


def _older(running: str, needed: str) -> bool:
    return tuple(map(int, running.split("."))) < tuple(map(int, needed.split(".")))


def _blank_unreadable_fstrings(text: str) -> str | None:
    """`text` with every f-string token the running grammar rejects replaced by a blank
    string literal of the same shape; None when nothing was replaced or it cannot be told."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return None
    lines = text.splitlines(keepends=True)
    replaced = False
    for token in reversed(tokens):  # from the end, so earlier positions stay valid
        if token.type != tokenize.STRING or "f" not in _prefix(token.string).lower():
            continue
        try:
            ast.parse(token.string, mode="eval")
            continue
        except SyntaxError:
            pass
        _replace(lines, token.start, token.end, _blank(token.string))
        replaced = True
    return "".join(lines) if replaced else None


def _prefix(literal: str) -> str:
    return literal[: len(literal) - len(literal.lstrip("rRbBuUfF"))]


def _blank(literal: str) -> str:
    """A plain string literal as long as `literal`, with its line breaks where they were."""
    pieces = literal.split("\n")
    quote = '"""' if len(pieces) > 1 else '"'
    if len(pieces) == 1:
        return quote + " " * (len(literal) - 2) + quote
    first = quote + " " * (len(pieces[0]) - len(quote))
    last = " " * (len(pieces[-1]) - len(quote)) + quote
    return "\n".join([first, *(" " * len(p) for p in pieces[1:-1]), last])


def _replace(lines: list[str], start: tuple[int, int], end: tuple[int, int], new: str) -> None:
    (first, first_col), (last, last_col) = start, end
    head = lines[first - 1][:first_col]
    tail = lines[last - 1][last_col:]
    lines[first - 1 : last] = [head + new + tail]
