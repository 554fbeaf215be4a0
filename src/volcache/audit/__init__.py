"""`volcache audit`: a linter for code, Dockerfiles and scripts that duplicate model weights.

It reads Python with `ast`, and Dockerfiles and shell scripts with a line-continuation-aware
reader (a Dockerfile brings the build-context scripts its image runs), never
imports or runs what it reads, and reports each finding as `path:line:col CODE message`
with a one-line fix. The rules live in `volcache.audit.rules`, one per module.
"""

from __future__ import annotations

from ._engine import AuditOptions, AuditReport, audit_paths, audit_source
from ._finding import Finding, Severity
from .rules import ALL_RULES, Rule

__all__ = [
    "ALL_RULES",
    "AuditOptions",
    "AuditReport",
    "Finding",
    "Rule",
    "Severity",
    "audit_paths",
    "audit_source",
]
