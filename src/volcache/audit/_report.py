"""The three output formats: text for people, JSON for scripts, SARIF 2.1.0 for code scanning."""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._finding import Finding
from .rules import PARSE_ERROR, Rule
from .rules import PARSE_ERROR_FIX as _PARSE_ERROR_FIX
from .rules import PARSE_ERROR_SUMMARY as _PARSE_ERROR_SUMMARY

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
TOOL_NAME = "volcache audit"


def render_text(findings: Sequence[Finding]) -> str:
    """One `path:line:col CODE message` line per finding, each followed by `  fix: hint`."""
    return "".join(f"{f.format()}\n  fix: {f.fix}\n" for f in findings)


def render_json(findings: Sequence[Finding]) -> str:
    """A JSON list of objects: path, line, col (1-based), code, severity, message, fix."""
    rows = [
        {
            "path": f.path,
            "line": f.line,
            "col": f.col,
            "code": f.code,
            "severity": f.severity,
            "message": f.message,
            "fix": f.fix,
        }
        for f in findings
    ]
    return json.dumps(rows, indent=2) + "\n"


def _version() -> str:
    try:
        return metadata.version("volcache")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def artifact_uri(path: str, cwd: Path | None = None) -> str:
    """A SARIF artifact URI: relative to `cwd`, forward slashes, percent-encoded; else a file: URI."""
    cwd = (cwd or Path.cwd()).resolve()
    candidate = Path(path)
    if not candidate.is_absolute():
        return quote(candidate.as_posix(), safe="/")
    try:
        return quote(candidate.resolve().relative_to(cwd).as_posix(), safe="/")
    except ValueError:
        return candidate.resolve().as_uri()


def _descriptor(code: str, name: str, summary: str, full: str, fix: str, level: str, markdown: str) -> dict[str, Any]:
    return {
        "id": code,
        "name": name,
        "shortDescription": {"text": summary},
        "fullDescription": {"text": full},
        "help": {"text": fix, "markdown": markdown},
        "defaultConfiguration": {"level": level},
    }


def _rule_descriptor(rule: Rule) -> dict[str, Any]:
    full = " ".join(rule.section("What it does").split())
    return _descriptor(rule.code, rule.name, rule.summary, full, rule.fix, rule.severity, rule.doc())


def render_sarif(findings: Sequence[Finding], rules: Sequence[Rule], cwd: Path | None = None) -> str:
    """A SARIF 2.1.0 log with one run, as GitHub code scanning accepts it."""
    descriptors = [
        _descriptor(PARSE_ERROR, "parse-error", _PARSE_ERROR_SUMMARY, _PARSE_ERROR_SUMMARY, _PARSE_ERROR_FIX,
                    "error", _PARSE_ERROR_SUMMARY),
        *(_rule_descriptor(r) for r in rules),
    ]  # fmt: skip
    index = {d["id"]: i for i, d in enumerate(descriptors)}
    results = [
        {
            "ruleId": f.code,
            "ruleIndex": index[f.code],
            "level": f.severity,
            "message": {"text": f"{f.message}. Fix: {f.fix}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": artifact_uri(f.path, cwd)},
                        "region": {"startLine": f.line, "startColumn": f.col},
                    }
                }
            ],
        }
        for f in findings
        if f.code in index
    ]
    log = {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "version": _version(),
                        "rules": descriptors,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"
