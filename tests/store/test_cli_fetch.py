"""`volcache fetch` and `volcache ls` as a user runs them, in subprocesses against the emulator."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_NEEDED_BYTES, run_cli, subprocess_env
from volcache.testing import Faults, HubEmulator, write_random_repo


def _large_files(root: Path, skip: Path) -> list[Path]:
    """Regular files of 100 kB or more (the weights), outside the emulator's mirror."""
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and skip not in p.parents
            and p.stat().st_size >= 100_000]  # fmt: skip


def test_fetch_puts_weights_only_on_the_volume_and_warm_fetch_is_offline(
    volume: Path, hub: HubEmulator, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = subprocess_env(volume, HF_ENDPOINT=hub.url, HOME=str(home))
    first = run_cli("fetch", "org/tiny", env=env, check=True)
    snapshot = Path(first.stdout.strip().splitlines()[-1])
    assert snapshot == volume / "models/hub/models--org--tiny/snapshots" / hub.commit_sha("org/tiny")
    large = _large_files(tmp_path, skip=tmp_path / "mirror")
    assert len(large) == 1 and volume in large[0].parents  # one copy of model.safetensors, on the volume
    hub.reset_stats()
    second = run_cli("fetch", "org/tiny", env=env, check=True)
    assert second.stdout.strip().splitlines()[-1] == str(snapshot)
    assert hub.stats.requests == 0


def test_hf_cache_ls_lists_the_model(volume: Path, hub: HubEmulator) -> None:
    env = subprocess_env(volume, HF_ENDPOINT=hub.url)
    run_cli("fetch", "org/tiny", env=env, check=True)
    hf = Path(sys.executable).with_name("hf")
    proc = subprocess.run([str(hf), "cache", "ls", "--cache-dir", str(volume / "models/hub")],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "org/tiny" in proc.stdout


def test_ls_shows_complete_and_incomplete(volume: Path, hub: HubEmulator) -> None:
    env = subprocess_env(volume, HF_ENDPOINT=hub.url)
    assert "no models" in run_cli("ls", env=env, check=True).stdout
    run_cli("fetch", "org/tiny", env=env, check=True)
    out = run_cli("ls", env=env, check=True).stdout
    assert "org/tiny" in out and "complete" in out and "main" in out
    for record in (volume / "models/.volcache/records").rglob("*.json"):
        record.unlink()
    assert "incomplete" in run_cli("ls", env=env, check=True).stdout


def test_eight_concurrent_fetches_download_each_file_once(tmp_path: Path, volume: Path) -> None:
    root = tmp_path / "mirror"
    write_random_repo(root / "org" / "big", {"model.safetensors": 3_000_000, "tokenizer.json": 50_000}, seed=3)
    with HubEmulator(root, faults=Faults(bandwidth=1_500_000)) as hub:
        env = subprocess_env(volume, HF_ENDPOINT=hub.url, VOLCACHE_LEASE_TIMEOUT="30")
        procs = [
            subprocess.Popen([sys.executable, "-m", "volcache.cli", "fetch", "org/big"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(8)
        ]  # fmt: skip
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0] * 8, [e for _, e in outs]
        paths = {o.strip().splitlines()[-1] for o, _ in outs}
        assert len(paths) == 1
        model_bytes = sum(p.stat().st_size for p in (root / "org/big").iterdir())
        assert set(hub.stats.per_file.values()) == {1}
        assert hub.stats.bytes_served == model_bytes
    physical = sum(p.stat().st_size for p in volume.rglob("*") if p.is_file() and not p.is_symlink()
                   and "blobs" in p.parts)  # fmt: skip
    assert physical == model_bytes


@pytest.fixture
def small_volume(tmp_path: Path) -> Path:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs volume needs root")
    vol = tmp_path / "small"
    vol.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(vol)]).returncode != 0:
        pytest.skip("mount -t tmpfs is not permitted here")
    yield vol
    subprocess.run(["umount", str(vol)], check=False)


def test_volume_too_small_fails_cleanly(small_volume: Path, hub: HubEmulator) -> None:
    env = subprocess_env(small_volume, HF_ENDPOINT=hub.url)
    proc = run_cli("fetch", "org/tiny", env=env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("volcache: error: not enough space")
    assert f"({TINY_NEEDED_BYTES} bytes)" in lines[-1] and "free" in lines[-1]
    assert list(small_volume.iterdir()) == []
    assert hub.stats.file_requests == 0


def test_usage_and_failure_exit_codes(volume: Path, hub: HubEmulator) -> None:
    env = subprocess_env(volume, HF_ENDPOINT=hub.url, HF_TOKEN="hf_supersecret123")
    assert run_cli("fetch", "--bogus", env=env).returncode == 2
    missing = run_cli("fetch", "org/missing", env=env)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].startswith("volcache: error: org/missing was not found")
    assert "Traceback" not in missing.stderr and "hf_supersecret123" not in missing.stderr
    bad = run_cli("fetch", "org/name/extra", env=env)
    assert bad.returncode == 1 and "not a Hugging Face model id" in bad.stderr
    assert "Examples" in run_cli("fetch", "--help", env=env).stdout
