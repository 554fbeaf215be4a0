"""Inline suppression: `# volcache: ignore` and `# volcache: ignore[VC101, VC2]`.

A bare directive silences every rule on its line; a bracketed one silences the listed
codes, each of which may be a prefix (`VC2` covers VC201 to VC205), as in `--select`.
"""

from __future__ import annotations

import re

_DIRECTIVE = re.compile(r"#\s*volcache:\s*ignore\b(?:\[(?P<codes>[^\]]*)\])?", re.IGNORECASE)

ALL_CODES: frozenset[str] = frozenset()  # an empty code set means "every code"


def parse_directive(comment: str) -> frozenset[str] | None:
    """The codes a comment silences (`ALL_CODES` for a bare directive), or None."""
    match = _DIRECTIVE.search(comment)
    if match is None:
        return None
    codes = match.group("codes")
    if codes is None:
        return ALL_CODES
    return frozenset(c.strip().upper() for c in codes.split(",") if c.strip())


class Suppressions:
    """Directives by line number."""

    def __init__(self) -> None:
        self._by_line: dict[int, frozenset[str]] = {}

    def add(self, line: int, codes: frozenset[str]) -> None:
        current = self._by_line.get(line)
        if current is None:
            self._by_line[line] = codes
        elif current and codes:
            self._by_line[line] = current | codes
        else:
            self._by_line[line] = ALL_CODES

    def covers(self, line: int, code: str) -> bool:
        codes = self._by_line.get(line)
        if codes is None:
            return False
        return not codes or any(code.startswith(c) for c in codes)
