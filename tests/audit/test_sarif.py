"""SARIF output checked against the SARIF 2.1.0 schema's rules for the objects it uses.

The official schema is not vendored (no network in CI, and it is 110 kB of someone else's
file); this test encodes what the schema requires of each object volcache writes: the
required properties, the allowed properties (the schema sets `additionalProperties: false`
on all of them), the enums and the minimums. A full validation against the official
schema runs too when `jsonschema` is installed and VOLCACHE_SARIF_SCHEMA names the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from volcache.audit import ALL_RULES, AuditOptions, audit_paths
from volcache.audit._report import artifact_uri, render_sarif

from ._support import FIXTURES

# object -> (required, allowed) properties, from sarif-schema-2.1.0.json
SCHEMA: dict[str, tuple[set[str], set[str]]] = {
    "sarifLog": ({"version", "runs"}, {"$schema", "version", "runs", "inlineExternalProperties", "properties"}),
    "run": (
        {"tool"},
        {"tool", "invocations", "conversion", "language", "versionControlProvenance", "originalUriBaseIds",
         "artifacts", "logicalLocations", "graphs", "results", "automationDetails", "runAggregates",
         "baselineGuid", "redactionTokens", "defaultEncoding", "defaultSourceLanguage", "newlineSequences",
         "columnKind", "externalPropertyFileReferences", "threadFlowLocations", "taxonomies", "addresses",
         "translations", "policies", "webRequests", "webResponses", "specialLocations", "properties"},
    ),
    "tool": ({"driver"}, {"driver", "extensions", "properties"}),
    "toolComponent": (
        {"name"},
        {"guid", "name", "organization", "product", "productSuite", "shortDescription", "fullDescription",
         "fullName", "version", "semanticVersion", "dottedQuadFileVersion", "releaseDateUtc", "downloadUri",
         "informationUri", "globalMessageStrings", "notifications", "rules", "taxa", "locations", "language",
         "contents", "isComprehensive", "localizedDataSemanticVersion",
         "minimumRequiredLocalizedDataSemanticVersion", "associatedComponent", "translationMetadata",
         "supportedTaxonomies", "properties"},
    ),
    "reportingDescriptor": (
        {"id"},
        {"id", "deprecatedIds", "guid", "deprecatedGuids", "name", "deprecatedNames", "shortDescription",
         "fullDescription", "messageStrings", "defaultConfiguration", "helpUri", "help", "relationships",
         "properties"},
    ),
    "multiformatMessageString": ({"text"}, {"text", "markdown", "properties"}),
    "reportingConfiguration": (set(), {"enabled", "level", "rank", "parameters", "properties"}),
    "result": (
        {"message"},
        {"ruleId", "ruleIndex", "rule", "kind", "level", "message", "analysisTarget", "locations", "guid",
         "correlationGuid", "occurrenceCount", "partialFingerprints", "fingerprints", "stacks", "codeFlows",
         "graphs", "graphTraversals", "relatedLocations", "suppressions", "baselineState", "rank",
         "attachments", "hostedViewerUri", "workItemUris", "provenance", "fixes", "taxa", "webRequest",
         "webResponse", "properties"},
    ),
    "message": (set(), {"text", "markdown", "id", "arguments", "properties"}),
    "location": (set(), {"id", "physicalLocation", "logicalLocations", "message", "annotations", "relationships",
                         "properties"}),
    "physicalLocation": (set(), {"address", "artifactLocation", "region", "contextRegion", "properties"}),
    "artifactLocation": (set(), {"uri", "uriBaseId", "index", "description", "properties"}),
    "region": (
        set(),
        {"startLine", "startColumn", "endLine", "endColumn", "charOffset", "charLength", "byteOffset",
         "byteLength", "snippet", "message", "sourceLanguage", "properties"},
    ),
}  # fmt: skip
LEVELS = {"none", "note", "warning", "error"}


def check(kind: str, value: Any) -> None:
    required, allowed = SCHEMA[kind]
    assert isinstance(value, dict), kind
    assert required <= value.keys(), f"{kind} lacks {required - value.keys()}"
    assert value.keys() <= allowed, f"{kind} has {value.keys() - allowed}"


def validate(log: dict[str, Any]) -> None:
    check("sarifLog", log)
    assert log["version"] == "2.1.0"
    assert isinstance(log["$schema"], str) and log["$schema"].startswith("https://")
    for run in log["runs"]:
        check("run", run)
        assert run.get("columnKind", "utf16CodeUnits") in ("utf16CodeUnits", "unicodeCodePoints")
        check("tool", run["tool"])
        driver = run["tool"]["driver"]
        check("toolComponent", driver)
        assert isinstance(driver["name"], str) and driver["name"]
        ids = [rule["id"] for rule in driver["rules"]]
        assert len(ids) == len(set(ids))
        for rule in driver["rules"]:
            check("reportingDescriptor", rule)
            for key in ("shortDescription", "fullDescription", "help"):
                check("multiformatMessageString", rule[key])
            check("reportingConfiguration", rule["defaultConfiguration"])
            assert rule["defaultConfiguration"]["level"] in LEVELS
        for result in run["results"]:
            validate_result(result, ids)


def validate_result(result: dict[str, Any], ids: list[str]) -> None:
    check("result", result)
    assert ids[result["ruleIndex"]] == result["ruleId"]
    assert result["level"] in LEVELS
    check("message", result["message"])
    assert isinstance(result["message"]["text"], str) and result["message"]["text"]
    for location in result["locations"]:
        check("location", location)
        physical = location["physicalLocation"]
        check("physicalLocation", physical)
        check("artifactLocation", physical["artifactLocation"])
        uri = physical["artifactLocation"]["uri"]
        assert "\\" not in uri and not uri.startswith("/")
        check("region", physical["region"])
        assert physical["region"]["startLine"] >= 1 and physical["region"]["startColumn"] >= 1


@pytest.fixture
def sarif(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(FIXTURES)
    report = audit_paths([Path("seed")], AuditOptions())
    return dict(json.loads(render_sarif(report.findings, report.rules)))


def test_sarif_follows_the_schema(sarif: dict[str, Any]) -> None:
    validate(sarif)


def test_sarif_results_match_the_findings(sarif: dict[str, Any]) -> None:
    (run,) = sarif["runs"]
    located = [
        (
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
            r["locations"][0]["physicalLocation"]["region"]["startColumn"],
            r["ruleId"],
            r["level"],
        )
        for r in run["results"]
    ]
    assert ("seed/before/runpod-handler.py", 14, 5, "VC101", "error") in located
    assert ("seed/after/Dockerfile.runpod", 6, 5, "VC205", "warning") in located
    assert len(located) == 9
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == {"VC001", *(r.code for r in ALL_RULES)}


def test_sarif_with_no_findings_is_valid(sarif: dict[str, Any]) -> None:
    log = json.loads(render_sarif([], ALL_RULES[:1]))
    validate(log)
    assert log["runs"][0]["results"] == []


def test_artifact_uris_are_relative_with_forward_slashes(tmp_path: Path) -> None:
    assert artifact_uri("src/a.py", tmp_path) == "src/a.py"
    assert artifact_uri(str(tmp_path / "src" / "a.py"), tmp_path) == "src/a.py"
    assert artifact_uri("/elsewhere/a.py", tmp_path).startswith("file:///elsewhere/a.py")
    assert artifact_uri("my worker/Dockerfile", tmp_path) == "my%20worker/Dockerfile"


def test_sarif_against_the_official_schema_when_available(sarif: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema_file = os.environ.get("VOLCACHE_SARIF_SCHEMA")
    if not schema_file:
        pytest.skip("set VOLCACHE_SARIF_SCHEMA to sarif-schema-2.1.0.json to validate against it")
    jsonschema.validate(sarif, json.loads(Path(schema_file).read_text(encoding="utf-8")))
