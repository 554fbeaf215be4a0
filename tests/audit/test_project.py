"""The project's own code and Dockerfile audit clean; the docs and the public surface stay in step."""

from __future__ import annotations

import pytest

import volcache.audit
from volcache.audit import AuditOptions, audit_paths
from volcache.audit._docs import rules_markdown

from ._support import REPO_ROOT, lines


def test_project_source_and_dockerfile_audit_clean() -> None:
    targets = [REPO_ROOT / "src"]
    targets += sorted(p for p in REPO_ROOT.glob("Dockerfile*") if p.is_file())  # Dockerfile, Dockerfile.vllm, ...
    report = audit_paths(targets, AuditOptions())
    assert report.files_checked > 0
    assert lines(report.findings) == []


def test_docs_rule_reference_is_generated_from_the_docstrings() -> None:
    docs = (REPO_ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
    assert rules_markdown() in docs, "regenerate it: python -m volcache.audit._docs docs/audit.md"


def test_public_surface() -> None:
    assert sorted(volcache.audit.__all__) == [
        "ALL_RULES",
        "AuditOptions",
        "AuditReport",
        "Finding",
        "Rule",
        "Severity",
        "audit_paths",
        "audit_source",
    ]


def test_pre_commit_hook_definition() -> None:
    yaml = pytest.importorskip("yaml")
    (hook,) = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "volcache-audit"
    assert hook["entry"] == "volcache audit"
    assert hook["language"] == "python"
    assert {"python", "dockerfile"} <= set(hook["types_or"]) <= {"python", "dockerfile", "shell"}
