"""Each rule over its fixture, compared line by line with the committed expectation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from volcache.audit import ALL_RULES, AuditOptions, Rule, audit_paths, audit_source
from volcache.audit._files import file_kind
from volcache.audit.rules import DockerfileRule, PythonRule
from volcache.audit.rules._base import DOC_SECTIONS

from ._support import FIXTURES, expected, lines

RULE_IDS = [r.code for r in ALL_RULES]


def fixture_of(rule: Rule) -> Path:
    return FIXTURES / (rule.code + (".py" if rule.language == "python" else ".Dockerfile"))


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
def test_rule_matches_its_expected_output(rule: Rule) -> None:
    path = fixture_of(rule)
    found = audit_source(path.read_text(encoding="utf-8"), path.name, rule.language, AuditOptions(select=(rule.code,)))
    assert lines(found) == expected(rule.code)


def _extra_fixtures() -> list[Path]:
    """More cases of one rule, as `VC204.sh` or `VC105.alone.py`, each with `<name>.expected`."""
    primary = {fixture_of(r).name for r in ALL_RULES}
    return sorted(
        p
        for p in FIXTURES.glob("VC*.*")
        if p.suffix != ".expected" and p.name not in primary and file_kind(p) is not None
    )


@pytest.mark.parametrize("path", _extra_fixtures(), ids=lambda p: p.name)
def test_more_cases_match_their_expected_output(path: Path) -> None:
    code, kind = path.name[:5], file_kind(path)
    assert kind is not None
    options = AuditOptions(select=(code,))
    found = audit_source(path.read_text(encoding="utf-8"), path.name, kind, options)
    assert lines(found) == expected(path.name)
    assert "# ok" in path.read_text(encoding="utf-8") or found, "a case file must fail or show what stays silent"


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
def test_fixture_has_failing_and_ok_cases(rule: Rule) -> None:
    text = fixture_of(rule).read_text(encoding="utf-8")
    assert expected(rule.code), "a fixture must fail somewhere"
    assert "# ok" in text, "a fixture must show the cases the rule leaves alone"
    assert "volcache: ignore" in text, "a fixture must show a suppressed case"


def test_seed_before_is_flagged_at_the_copies_and_the_tmp_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)
    report = audit_paths([Path("seed/before")])
    assert lines(report.findings) == expected("seed_before")
    codes = {(f.path, f.line, f.code) for f in report.findings}
    assert ("seed/before/runpod-handler.py", 14, "VC101") in codes  # copytree in migrate_build_cache_to_volume
    assert ("seed/before/model_cache_init.py", 25, "VC101") in codes  # migrate_existing_models
    assert ("seed/before/Dockerfile.runpod", 5, "VC202") in codes  # ENV HF_HOME=/tmp/models


def test_seed_after_is_clean_but_for_transformers_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)
    report = audit_paths([Path("seed/after")])
    assert lines(report.findings) == expected("seed_after")
    assert {f.code for f in report.findings} == {"VC105", "VC205"}
    assert all(f.severity == "warning" for f in report.findings)


def test_codes_are_unique_sorted_and_named_after_their_modules() -> None:
    assert sorted(set(RULE_IDS)) == RULE_IDS
    for rule in ALL_RULES:
        module = type(rule).__module__.rsplit(".", 1)[-1]
        assert module.startswith(rule.code.lower() + "_")
        assert rule.code.startswith("VC1" if isinstance(rule, PythonRule) else "VC2")
        assert isinstance(rule, PythonRule | DockerfileRule)


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
def test_rule_docstring_has_every_section(rule: Rule) -> None:
    for title in DOC_SECTIONS:
        assert rule.section(title), f"{rule.code} lacks '## {title}'"
    assert rule.summary and rule.fix and rule.name
    assert rule.severity in ("error", "warning")


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
def test_every_finding_carries_a_fix_and_the_rule_severity(rule: Rule) -> None:
    path = fixture_of(rule)
    for finding in audit_source(path.read_text(), path.name, rule.language, AuditOptions(select=(rule.code,))):
        assert finding.fix and "\n" not in finding.fix
        assert finding.severity == rule.severity


def test_suppression_comments_silence_only_their_codes() -> None:
    source = (
        "import shutil\n"
        'shutil.copytree("/tmp/models", "/runpod-volume/models")  # volcache: ignore[VC102]\n'
        'shutil.copytree("/tmp/models", "/runpod-volume/models")  # volcache: ignore[VC1]\n'
        'shutil.copytree("/tmp/models", "/runpod-volume/models")  # noqa  # volcache: ignore\n'
        'text = "# volcache: ignore"; shutil.copytree("/tmp/models", "/x/models")\n'
    )
    assert [(f.line, f.code) for f in audit_source(source, "s.py", "python")] == [(2, "VC101"), (5, "VC101")]


def test_dockerfile_suppression_above_the_instruction_and_a_continuation_line() -> None:
    text = (
        "FROM runpod/base\n"
        "# transformers 4 reads it\n"
        "# volcache: ignore[VC205]\n"
        "ENV TRANSFORMERS_CACHE=/runpod-volume/models\n"
        "RUN cp -r /tmp/models /a/models && \\\n"
        "# volcache: ignore[VC204]\n"
        "    cp -r /tmp/models /b/models\n"
    )
    found = audit_source(text, "Dockerfile", "dockerfile")
    assert [(f.line, f.code) for f in found] == [(5, "VC204")]


def test_parse_error_is_a_finding_unless_ignored() -> None:
    found = audit_source("def broken(:\n", "bad.py", "python")
    assert [(f.code, f.line) for f in found] == [("VC001", 1)]
    assert audit_source("def broken(:\n", "bad.py", "python", AuditOptions(ignore=("VC001",))) == []
    assert [f.code for f in audit_source("x = 1\0", "nul.py", "python")] == ["VC001"]


def test_a_project_with_build_context_scripts_sibling_constants_and_a_bake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)
    report = audit_paths([Path("projects/worker")])
    assert lines(report.findings) == expected("projects_worker")
    # Dockerfile.vllm bakes HF_HOME through bake.py: neither HF_HOME nor HF_DATASETS_CACHE is flagged
    assert {(f.path, f.line) for f in report.findings if f.code == "VC202"} == {("projects/worker/Dockerfile.vllm", 6)}


def test_a_dockerfile_named_alone_brings_the_scripts_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)
    report = audit_paths([Path("projects/worker/Dockerfile")])
    assert lines(report.findings) == expected("projects_worker_dockerfile")
    assert report.files_checked == 4  # the Dockerfile, builder/fetch.py, builder/models.sh and start.sh


@pytest.mark.parametrize(
    "fstring",
    [
        "print(f\"{'\\n'.join(names)}\")",  # a backslash in the expression
        'print(f"""{len(names)  # a comment\n}""")',  # a comment in the expression
        's = f"""\n{"\\n".join(names)}\n"""',  # over several lines
    ],
)
def test_an_fstring_that_needs_python_3_12_is_still_audited(fstring: str) -> None:
    source = f"import shutil\nnames = ['a']\n{fstring}\n" + 'shutil.copytree("/tmp/models", "/runpod-volume/models")\n'
    found = audit_source(source, "new.py", "python")
    line = source.count("\n")
    assert [(f.line, f.col, f.code) for f in found] == [(line, 1, "VC101")]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the running grammar reads PEP 695 type aliases")
def test_a_file_that_needs_a_newer_python_says_which() -> None:
    found = audit_source("type Paths = list[str]\n", "alias.py", "python")
    assert lines(found) == [
        f"alias.py:1:6 VC001 cannot parse this file (invalid syntax; the file needs Python 3.12 or newer, "
        f"the audit runs on {sys.version_info.major}.{sys.version_info.minor}): not audited"
    ]
