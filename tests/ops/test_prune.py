"""`volcache prune` and `volcache rm`: plan first, least recently used first, and never what a worker needs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_settings, run_cli, subprocess_env
from tests.faults._support import faults_trial
from tests.ops.conftest import Deployment, age, invoke
from volcache import ModelStore
from volcache.ops.prune import execute, plan_prune
from volcache.store import VolumeLayout, scan_volume
from volcache.store.inuse import hold_in_use
from volcache.store.lease import Lease
from volcache.testing import Faults, HubEmulator, write_random_repo

DAY = 86400.0


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _models_left(d: Deployment) -> list[str]:
    return sorted(i.model for i in scan_volume(d.settings()).snapshots if not i.readonly)


def _last_used(d: Deployment, **days: float) -> None:
    """Age the used markers: `_last_used(d, a=3)` says org/a was last loaded 3 days ago."""
    for name, ago in days.items():
        model = f"org/{name}"
        age(VolumeLayout.of(d.settings()).used_marker(model, d.commits[model]), ago * DAY)


def _gone(d: Deployment, model: str) -> None:
    s = d.settings()
    repo = ModelStore(s).repo_dir(model)
    assert not repo.exists(), _tree(repo)  # refs, snapshot, blobs, then the empty folders
    assert not (s.records_dir / "records" / repo.name).exists()
    assert not VolumeLayout.of(s).used_marker(model, d.commits[model]).exists()


def test_dry_run_prints_the_plan_lru_first_and_removes_nothing(deployment: Deployment) -> None:
    _last_used(deployment, a=3, b=1, c=2)
    before = _tree(deployment.volume)
    result = invoke(deployment.volume, "prune", "--keep-bytes", "0", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = [line.split("@")[0].strip() for line in result.stdout.splitlines() if "@" in line]
    assert lines == ["org/a", "org/c", "org/b"]
    assert result.stdout.startswith("prune plan: remove 3 snapshots of 3 models, free 3.9 MB")
    assert "dry run: nothing was removed." in result.stdout
    assert _tree(deployment.volume) == before


def test_keep_bytes_evicts_least_recently_used_until_under(deployment: Deployment) -> None:
    _last_used(deployment, a=1, b=3, c=2)
    s = deployment.settings()
    blobs_b = sum(p.stat().st_size for p in (ModelStore(s).repo_dir("org/b") / "blobs").iterdir())
    total = plan_prune(s, keep_bytes=10**12).cache_bytes
    result = invoke(deployment.volume, "prune", "--keep-bytes", str(total - blobs_b + 1000), "--yes")
    assert result.exit_code == 0, result.output
    assert f"removed 1 snapshot, freed {blobs_b / 1e6:.1f} MB." in result.stdout
    _gone(deployment, "org/b")
    assert _models_left(deployment) == ["org/a", "org/c"]
    assert invoke(deployment.volume, "verify").exit_code == 0


def test_older_than_evicts_only_snapshots_unused_that_long(deployment: Deployment) -> None:
    _last_used(deployment, a=10, b=8, c=1 / 24)
    result = invoke(deployment.volume, "prune", "--older-than", "7d", "-y")
    assert result.exit_code == 0, result.output
    _gone(deployment, "org/a")
    _gone(deployment, "org/b")
    assert _models_left(deployment) == ["org/c"]


def test_without_yes_off_a_terminal_is_a_usage_error(deployment: Deployment) -> None:
    before = _tree(deployment.volume)
    result = invoke(deployment.volume, "prune", "--older-than", "0s")
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert _tree(deployment.volume) == before
    assert invoke(deployment.volume, "prune").exit_code == 2  # neither --keep-bytes nor --older-than
    bad = invoke(deployment.volume, "prune", "--keep-bytes", "lots")
    assert bad.exit_code == 2 and "not a size" in bad.stderr


def test_incomplete_files_and_the_readonly_cache_are_never_removed(deployment: Deployment) -> None:
    s = deployment.settings()
    partial = ModelStore(s).repo_dir("org/a") / "blobs" / ("f" * 64 + ".incomplete")
    age(partial, 7 * DAY)  # even a stale one: it could be a live download of another tool
    runpod = s.runpod_cache / "models--org--z"
    (runpod / "snapshots" / ("e" * 40)).mkdir(parents=True)
    (runpod / "snapshots" / ("e" * 40) / "model.safetensors").write_bytes(b"w" * 1000)
    before_runpod = _tree(s.runpod_cache)
    result = invoke(deployment.volume, "prune", "--keep-bytes", "0", "--yes")
    assert result.exit_code == 0, result.output
    assert _models_left(deployment) == []
    assert partial.exists() and _tree(s.runpod_cache) == before_runpod
    proc = run_cli("rm", "org/z", "--yes", env=subprocess_env(deployment.volume))
    assert proc.returncode == 1 and "read-only cache" in proc.stderr


def test_rm_removes_one_model_and_refuses_one_in_use(deployment: Deployment) -> None:
    result = invoke(deployment.volume, "rm", "org/a", "--revision", "main", "--yes")
    assert result.exit_code == 0, result.output
    _gone(deployment, "org/a")
    with hold_in_use(deployment.settings(), "org/b", deployment.commits["org/b"]):
        proc = run_cli("rm", "org/b", "--yes", env=subprocess_env(deployment.volume))
    assert proc.returncode == 1
    # The heartbeat's age is a second or two on a loaded machine; the rest of the line is exact.
    holder = f"volcache: error: org/b@{deployment.commits['org/b'][:8]} in use by pid {os.getpid()} on "
    pattern = re.escape(f"{holder}{os.uname().nodename} (heartbeat ") + r"[0-5]" + re.escape("s ago); not removed.")
    assert re.fullmatch(pattern, proc.stderr.strip().splitlines()[-1]), proc.stderr
    assert _models_left(deployment) == ["org/b", "org/c"]
    missing = run_cli("rm", "org/nope", env=subprocess_env(deployment.volume))
    assert missing.returncode == 1 and "is not in" in missing.stderr


def test_execute_checks_again_under_the_lease(deployment: Deployment) -> None:
    """A lease taken, a worker loading, or a use recorded after planning: that snapshot stays."""
    s = deployment.settings()
    plan = plan_prune(s, keep_bytes=0)
    assert len(plan.evictions) == 3
    lease = Lease(ModelStore(s).lease_path("org/a"), timeout=5, max_wait=1, purpose="download org/a@main")
    with lease, hold_in_use(s, "org/b", deployment.commits["org/b"]):
        VolumeLayout.of(s).used_marker("org/c", deployment.commits["org/c"]).parent.mkdir(parents=True, exist_ok=True)
        VolumeLayout.of(s).used_marker("org/c", deployment.commits["org/c"]).touch()
        result = execute(s, plan, lease_wait=0.3)
    assert result.removed == () and result.freed_bytes == 0
    reasons = {k.model: k.reason for k in result.skipped}
    assert reasons["org/a"].startswith("busy")
    assert reasons["org/b"].startswith("in use by pid")
    assert reasons["org/c"] == "loaded by a worker since the plan was made"
    assert _models_left(deployment) == ["org/a", "org/b", "org/c"]


def test_blobs_shared_with_a_remaining_snapshot_are_kept(tmp_path: Path) -> None:
    mirror, volume = tmp_path / "mirror", tmp_path / "vol"
    volume.mkdir()
    write_random_repo(mirror / "org/s", {"model.safetensors": 50_000, "shared.safetensors": 60_000}, seed=1)
    with HubEmulator(mirror) as hub:
        s = make_settings(volume, HF_ENDPOINT=hub.url)
        old = ModelStore(s).resolve("org/s")
        write_random_repo(mirror / "org/s", {"model.safetensors": 50_000}, seed=2)  # a new commit
        new = ModelStore(s).resolve("org/s", hub.commit_sha("org/s"))
    assert old.commit != new.commit
    shared = (new.path / "shared.safetensors").resolve()
    result = invoke(volume, "rm", "org/s", "-r", "main", "--yes")  # refs/main names the old commit
    assert result.exit_code == 0, result.output
    assert not old.path.exists() and not (volume / "models/hub/models--org--s/refs/main").exists()
    assert shared.exists() and (new.path / "model.safetensors").exists()
    assert invoke(volume, "verify", "org/s").exit_code == 0


# -- contention -----------------------------------------------------------------------------------
def _spawn(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


HOLD_IN_USE = """
import sys, time
from volcache import Settings
from volcache.store.inuse import hold_in_use
handle = hold_in_use(Settings.from_env(), sys.argv[1], sys.argv[2])
print("ready", flush=True)
time.sleep(120)
"""

HOLD_LEASE = """
import sys, time
from volcache import ModelStore, Settings
from volcache.store.lease import Lease
s = Settings.from_env()
Lease(ModelStore(s).lease_path(sys.argv[1]), timeout=s.lease_timeout, max_wait=5, purpose="download").acquire()
print("ready", flush=True)
time.sleep(120)
"""


def test_prune_under_contention_removes_only_the_evictable_model(
    deployment: Deployment, ops_hub: HubEmulator, children: list[subprocess.Popen[str]]
) -> None:
    """org/a is evictable; org/b is loaded by a live worker; org/c's lease is held by another
    process; org/d is being downloaded right now. prune --keep-bytes 0 removes org/a only, and
    the download of org/d completes undisturbed."""
    s = deployment.settings()
    env = subprocess_env(deployment.volume, HF_ENDPOINT=ops_hub.url, VOLCACHE_LEASE_TIMEOUT="5")
    children.append(
        _spawn(HOLD_IN_USE.replace("sys.argv[1], sys.argv[2]", f"'org/b', '{deployment.commits['org/b']}'"), env)
    )
    children.append(_spawn(HOLD_LEASE.replace("sys.argv[1]", "'org/c'"), env))
    ops_hub.faults = Faults(bandwidth=250_000, only="org/d/model.safetensors")
    fetch = subprocess.Popen(
        [sys.executable, "-m", "volcache.cli", "fetch", "org/d"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    repo_d = ModelStore(s).repo_dir("org/d")

    def downloading() -> bool:  # config.json is linked, model.safetensors is still arriving
        return any((repo_d / "blobs").rglob("*.incomplete")) and any((repo_d / "snapshots").glob("*/config.json"))

    deadline = time.monotonic() + 30
    while not downloading() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert downloading(), "the download of org/d did not start"

    result = invoke(deployment.volume, "prune", "--keep-bytes", "0", "--yes")
    assert result.exit_code == 0, result.output
    assert "removed 1 snapshot" in result.stdout
    kept = [line for line in result.stdout.splitlines() if line.strip().startswith("kept")]
    assert any("org/b@" in k and "in use by pid" in k for k in kept), kept
    assert any("org/c@" in k and "lease is held by" in k for k in kept), kept
    assert any("org/d@" in k and "lease is held by" in k for k in kept), kept
    _gone(deployment, "org/a")

    _, err = fetch.communicate(timeout=60)
    assert fetch.returncode == 0, err
    assert ops_hub.stats.per_file == {"org/d/config.json": 1, "org/d/model.safetensors": 1}
    assert _models_left(deployment) == ["org/b", "org/c", "org/d"]
    check = invoke(deployment.volume, "verify")
    assert check.exit_code == 0 and "3 snapshots" in check.stdout


def _prune_on_a_terminal(volume: Path, answer: bytes) -> tuple[int, str]:
    """`volcache prune --keep-bytes 0` with a pseudo-terminal as stdin/stdout, answering the prompt."""
    import pty
    import select

    main, child = pty.openpty()
    env = subprocess_env(volume, HOME=str(volume.parent / "home"), COLUMNS="200")
    proc = subprocess.Popen(
        [sys.executable, "-m", "volcache.cli", "prune", "--keep-bytes", "0"],
        stdin=child,
        stdout=child,
        stderr=child,
        env=env,
    )
    os.close(child)
    seen, answered = b"", False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(main, answer + b"\n")
            answered = True
        if proc.poll() is not None and not ready:
            break
    os.close(main)
    assert answered, seen.decode(errors="replace")
    return proc.wait(timeout=30), seen.decode(errors="replace")


def test_on_a_terminal_prune_asks_first_and_no_keeps_everything(deployment: Deployment) -> None:
    before = _tree(deployment.volume)
    code, out = _prune_on_a_terminal(deployment.volume, b"n")
    assert code == 0, out
    assert "Remove 3 snapshots and free 3.9 MB? [y/N]" in out
    assert "cancelled: nothing was removed." in out
    assert _tree(deployment.volume) == before


def test_on_a_terminal_prune_removes_after_yes(deployment: Deployment) -> None:
    code, out = _prune_on_a_terminal(deployment.volume, b"y")
    assert code == 0, out
    assert "removed 3 snapshots" in out
    assert _models_left(deployment) == []


@faults_trial("12.8", "blobs left by an interrupted prune")
def test_blobs_an_interrupted_prune_left_behind_are_planned_and_removed(deployment: Deployment) -> None:
    """A prune killed after removing refs and snapshot links leaves blobs nothing points at (issue 12, item 8)."""
    s = deployment.settings()
    repo = ModelStore(s).repo_dir("org/a")
    blobs = sorted((repo / "blobs").iterdir())
    shutil.rmtree(repo / "snapshots")
    shutil.rmtree(repo / "refs")
    orphan_bytes = sum(b.stat().st_size for b in blobs)
    assert "org/a" not in _models_left(deployment)  # `ls` no longer sees it; its bytes are still there
    plan = plan_prune(s, older_than=365 * DAY)
    assert [m.model for m in plan.models] == ["org/a"] and plan.evictions == ()
    assert sorted(plan.models[0].orphans) == [b.resolve() for b in blobs]
    assert plan.expected_freed == orphan_bytes
    result = execute(s, plan)
    assert result.freed_bytes == orphan_bytes
    assert not repo.exists(), _tree(repo)
    assert sorted(_models_left(deployment)) == ["org/b", "org/c"]
