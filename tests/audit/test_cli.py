"""`volcache audit` on the command line: exit codes, formats, selection, configuration."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from volcache.cli import cli

from ._support import FIXTURES, expected


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["audit", *args])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the seed's before/after fixtures in a folder of its own, as the cwd."""
    shutil.copytree(FIXTURES / "seed", tmp_path / "seed")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_findings_exit_1_with_text_lines_and_fix_hints(project: Path) -> None:
    result = run("seed/before")
    assert result.exit_code == 1
    out = result.stdout.splitlines()
    assert out[0::2] == expected("seed_before")
    assert all(line.startswith("  fix: ") for line in out[1::2])
    assert "7 finding(s) (6 error, 1 warning) in 3 files" in result.stderr


def test_clean_exit_0(project: Path) -> None:
    result = run("seed/after", "--ignore", "VC105,VC205")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "no findings in 2 files" in result.stderr


def test_default_path_is_the_current_folder(project: Path) -> None:
    result = run()
    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 2 * (len(expected("seed_before")) + len(expected("seed_after")))


@pytest.mark.parametrize(
    "args",
    [("--select", "VC999"), ("--ignore", "XX1"), ("--format", "yaml"), ("does-not-exist",), ("--explain", "VC9")],
)
def test_usage_errors_exit_2(project: Path, args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output


def test_select_and_ignore_take_codes_and_prefixes(project: Path) -> None:
    only_docker = run("seed/before", "--select", "vc2")
    assert {line.split()[1] for line in only_docker.stdout.splitlines()[0::2]} == {"VC202", "VC205"}
    both = run("seed/before", "--select", "VC101", "--select", "VC205")
    assert {line.split()[1] for line in both.stdout.splitlines()[0::2]} == {"VC101", "VC205"}
    ignored = run("seed/before", "--ignore", "VC1,VC202")
    assert {line.split()[1] for line in ignored.stdout.splitlines()[0::2]} == {"VC205"}


def test_json_format(project: Path) -> None:
    result = run("--format", "json", "seed/after")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert rows == [
        {
            "path": "seed/after/Dockerfile.runpod",
            "line": 6,
            "col": 5,
            "code": "VC205",
            "severity": "warning",
            "message": rows[0]["message"],
            "fix": rows[0]["fix"],
        },
        rows[1],
    ]
    assert [f"{r['path']}:{r['line']}:{r['col']} {r['code']} {r['message']}" for r in rows] == expected("seed_after")


def test_json_is_an_empty_list_when_clean(project: Path) -> None:
    result = run("--format", "json", "--select", "VC103", "seed")
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])


def test_config_section_selects_ignores_and_excludes(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        '[tool.volcache.audit]\nignore = ["VC205"]\nexclude = ["seed/before/model_cache_init.py", "after"]\n'
    )
    result = run()
    codes = [line.split()[1] for line in result.stdout.splitlines()[0::2]]
    assert codes == ["VC202", "VC202", "VC202", "VC101"]
    assert "in 2 files" in result.stderr
    assert run("--isolated").stdout.count("VC205") == 2
    # the command line --select replaces the config's select; --ignore adds to its ignore
    assert run("--select", "VC205").exit_code == 0
    assert run("--ignore", "VC1,VC2").exit_code == 0


def test_config_from_a_parent_folder_applies_to_a_subfolder(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "pyproject.toml").write_text('[tool.volcache.audit]\nselect = ["VC101"]\n')
    monkeypatch.chdir(project / "seed")
    result = run("before/runpod-handler.py")
    assert result.stdout.splitlines()[0].startswith("before/runpod-handler.py:14:5 VC101 ")


@pytest.mark.parametrize(
    "section",
    ['select = ["VC999"]', 'selec = ["VC101"]', 'ignore = "VC105"', "this is not toml"],
)
def test_bad_config_exits_2(project: Path, section: str) -> None:
    (project / "pyproject.toml").write_text(f"[tool.volcache.audit]\n{section}\n")
    result = run("seed")
    assert result.exit_code == 2
    assert "pyproject.toml" in result.output


def test_mount_points_setting(project: Path) -> None:
    (project / "Dockerfile").write_text("FROM python\nVOLUME /data\nENV HF_HOME=/workspace/models\n")
    assert run("Dockerfile").exit_code == 1
    (project / "pyproject.toml").write_text('[tool.volcache.audit]\nmount-points = ["/workspace"]\n')
    assert run("Dockerfile").exit_code == 0


def test_unknown_file_is_skipped_with_a_note(project: Path) -> None:
    (project / "notes.txt").write_text("shutil.copytree('/tmp/models', '/x')\n")
    result = run("notes.txt")
    assert result.exit_code == 0
    assert "skipped notes.txt" in result.stderr


def test_parse_error_is_reported_as_vc001(project: Path) -> None:
    (project / "broken.py").write_text("def broken(:\n")
    result = run("broken.py")
    assert result.exit_code == 1
    assert result.stdout.startswith("broken.py:1:")
    assert " VC001 cannot parse this file" in result.stdout


def test_skipped_folders_are_not_read(project: Path) -> None:
    for folder in (".venv/lib", "node_modules/x", "build", "__pycache__"):
        (project / folder).mkdir(parents=True)
        (project / folder / "copy.py").write_text("import shutil\nshutil.copytree('/tmp/models', '/m')\n")
    assert run("--select", "VC101", ".").stdout.count("copy.py") == 0


def test_explain_prints_the_rule_documentation(project: Path) -> None:
    result = run("--explain", "vc101")
    assert result.exit_code == 0
    assert result.stdout.startswith("VC101 (copy-model-files, error)")
    assert "## Why is this bad?" in result.stdout


def test_subprocess_exit_codes(project: Path) -> None:
    """The installed entry point, in a real process: 1, 0 and 2."""
    script = Path(sys.executable).with_name("volcache")
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from volcache.cli import main; main()"]

    def status(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, "audit", *args], capture_output=True, text=True, timeout=60)

    before = status("--format", "sarif", "seed/before")
    assert before.returncode == 1, before.stderr
    assert json.loads(before.stdout)["version"] == "2.1.0"
    assert status("seed/after", "--ignore", "VC105,VC205").returncode == 0
    assert status("--select", "NOPE").returncode == 2


def test_python_dash_m(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "volcache.audit", "--select", "VC101", "seed/before"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout.count(" VC101 ") == 3
