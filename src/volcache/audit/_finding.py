"""One finding of `volcache audit`: where, which rule, what is wrong and how to fix it."""

from __future__ import annotations

import dataclasses
from typing import Literal

Severity = Literal["error", "warning"]


@dataclasses.dataclass(frozen=True, order=True)
class Finding:
    """A line that puts weights on disk twice or on the wrong disk.

    `line` and `col` are 1-based (as ruff, flake8 and SARIF count them); `col` counts
    characters, not bytes. `path` is the file as the user named it, with forward slashes.
    """

    path: str
    line: int
    col: int
    code: str
    message: str
    fix: str = dataclasses.field(compare=False)
    severity: Severity = dataclasses.field(default="error", compare=False)

    def format(self) -> str:
        """The stable one-line form: `path:line:col CODE message`."""
        return f"{self.path}:{self.line}:{self.col} {self.code} {self.message}"
