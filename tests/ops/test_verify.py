"""`volcache verify`: a flipped byte is found and named; --repair downloads that one file again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli, subprocess_env
from tests.ops.conftest import Deployment, invoke
from volcache.ops.verify import records_to_verify, verify
from volcache.testing import HubEmulator


def _flip_byte(path: Path, offset: int = 1000) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_clean_deployment_verifies(deployment: Deployment) -> None:
    proc = run_cli("verify", env=subprocess_env(deployment.volume))
    assert proc.returncode == 0, proc.stderr
    assert "verified 8 files (3.9 MB, 3 snapshots): all match." in proc.stdout
    assert "INFO volcache: verified org/a@" in proc.stderr  # log lines, not a progress bar, off a terminal


def test_flipped_byte_exits_1_naming_the_file(deployment: Deployment) -> None:
    blob = (deployment.snapshot("org/b") / "model.safetensors").resolve()
    _flip_byte(blob)
    proc = run_cli("verify", env=subprocess_env(deployment.volume))
    assert proc.returncode == 1
    error = [line for line in proc.stderr.splitlines() if line.startswith("volcache: error:")]
    assert len(error) == 1 and "model.safetensors of org/b@" in error[0] and "--repair" in error[0]
    assert "sha256" in proc.stderr and "org/a" not in error[0]


def test_small_files_are_checked_by_git_blob_id_and_missing_files_reported(deployment: Deployment) -> None:
    settings = deployment.settings()
    tokenizer = (deployment.snapshot("org/a") / "tokenizer.json").resolve()
    tokenizer.write_bytes(b"x" * tokenizer.stat().st_size)  # same size, other content
    (deployment.snapshot("org/c") / "model.safetensors").unlink()
    report = verify(settings, records_to_verify(settings))
    problems = {(p.model, p.file.path): p.problem for p in report.problems}
    assert problems.keys() == {("org/a", "tokenizer.json"), ("org/c", "model.safetensors")}
    assert problems[("org/a", "tokenizer.json")].startswith("git blob id")
    assert problems[("org/c", "model.safetensors")] == "missing"


def test_unknown_model_is_one_line_exit_1(deployment: Deployment) -> None:
    proc = run_cli("verify", "org/nope", env=subprocess_env(deployment.volume))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("volcache: error: org/nope has no completion record")


def test_repair_downloads_only_the_broken_file(deployment: Deployment, ops_hub: HubEmulator) -> None:
    snapshot = deployment.snapshot("org/b")
    broken = (snapshot / "model.safetensors").resolve()
    intact = (snapshot / "extra.safetensors").resolve()
    intact_inode = intact.stat().st_ino
    _flip_byte(broken)
    env = subprocess_env(deployment.volume, HF_ENDPOINT=ops_hub.url, VOLCACHE_LEASE_TIMEOUT="5")
    proc = run_cli("verify", "org/b", "--repair", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "repaired 1 file;" in proc.stdout
    assert ops_hub.stats.per_file == {"org/b/model.safetensors": 1}
    assert ops_hub.stats.bytes_served == broken.stat().st_size
    assert intact.stat().st_ino == intact_inode  # untouched
    assert not (deployment.settings().records_dir / "locks" / "models--org--b.lease").exists()
    assert invoke(deployment.volume, "verify").exit_code == 0


def test_progress_bar_on_a_terminal(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    from volcache.cli import _ops

    monkeypatch.setattr(_ops, "_stderr_is_terminal", lambda: True)
    result = invoke(deployment.volume, "verify", "org/a")
    assert result.exit_code == 0, result.output
    assert "verify: 100%" in result.stderr


def test_repair_of_a_missing_link_relinks_the_good_blob_without_downloading(
    deployment: Deployment, ops_hub: HubEmulator
) -> None:
    link = deployment.snapshot("org/c") / "model.safetensors"
    blob = link.resolve()
    inode = blob.stat().st_ino
    link.unlink()
    proc = run_cli("verify", "org/c", "--repair", env=subprocess_env(deployment.volume, HF_ENDPOINT=ops_hub.url))
    assert proc.returncode == 0, proc.stderr
    assert ops_hub.stats.per_file == {} and ops_hub.stats.bytes_served == 0
    assert link.resolve().stat().st_ino == inode
