"""Paths and helpers shared by the audit tests."""

from __future__ import annotations

from pathlib import Path

from volcache.audit import Finding

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parents[2]


def lines(findings: list[Finding] | tuple[Finding, ...]) -> list[str]:
    return [f.format() for f in findings]


def expected(name: str) -> list[str]:
    return (FIXTURES / f"{name}.expected").read_text(encoding="utf-8").splitlines()
