"""In-use markers: live while the holder lives (or, on another host, while fresh); dead pids are not live."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import make_settings
from volcache.store import VolumeLayout, hold_in_use, live_users, read_markers
from volcache.store.lease import Holder

COMMIT = "a" * 40


def _plant(folder: Path, holder: Holder, age: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{holder.host}-{holder.pid}.json"
    path.write_text(json.dumps(dataclasses.asdict(holder)))
    if age:
        when = time.time() - age
        os.utime(path, (when, when))
    return path


def test_hold_writes_a_heartbeated_marker_and_release_removes_it(volume: Path) -> None:
    settings = make_settings(volume, VOLCACHE_LEASE_TIMEOUT="0.4")
    handle = hold_in_use(settings, "org/a", COMMIT)
    try:
        (marker,) = live_users(settings, "org/a", COMMIT)
        assert marker.path == handle.path and marker.holder is not None
        assert marker.path.parent == settings.records_dir / "inuse" / "models--org--a" / COMMIT
        first = handle.path.stat().st_mtime
        time.sleep(0.35)
        assert handle.path.stat().st_mtime > first  # refreshed every lease_timeout / 4
    finally:
        handle.release()
    assert not handle.path.exists() and live_users(settings, "org/a", COMMIT) == []


def test_dead_process_on_this_host_is_not_live_even_when_fresh(volume: Path) -> None:
    settings = make_settings(volume)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = dataclasses.replace(Holder.me("loaded"), pid=int(child.stdout))
    _plant(VolumeLayout.of(settings).inuse_dir("org/a", COMMIT), dead)
    (marker,) = read_markers(settings, "org/a", COMMIT)
    assert not marker.live and live_users(settings, "org/a", COMMIT) == []


def test_other_host_is_live_while_fresh(volume: Path) -> None:
    settings = make_settings(volume, VOLCACHE_LEASE_TIMEOUT="5")
    folder = VolumeLayout.of(settings).inuse_dir("org/a", COMMIT)
    other = dataclasses.replace(Holder.me("loaded"), host="worker-elsewhere", pid=1)
    _plant(folder, other, age=3)
    assert len(live_users(settings, "org/a", COMMIT)) == 1
    _plant(folder, other, age=11)  # older than 2 x lease_timeout: its worker is gone
    assert live_users(settings, "org/a", COMMIT) == []


def test_context_manager_releases(volume: Path) -> None:
    settings = make_settings(volume)
    with hold_in_use(settings, "org/a", COMMIT) as handle:
        assert handle.path.exists()
    assert not handle.path.exists()


def test_a_volume_that_cannot_hold_the_marker_is_fail_soft(volume: Path) -> None:
    settings = make_settings(volume)
    settings.records_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.records_dir.write_text("not a folder")
    handle = hold_in_use(settings, "org/a", COMMIT)
    assert not handle.held
    handle.release()


def test_two_holders_with_one_host_name_and_pid_keep_their_own_markers(volume: Path) -> None:
    """Two containers can both be pid 1 under one host name: each marker is its own file."""
    settings = make_settings(volume)
    first, second = hold_in_use(settings, "org/a", COMMIT), hold_in_use(settings, "org/a", COMMIT)
    try:
        assert first.path != second.path
        assert len(live_users(settings, "org/a", COMMIT)) == 2
        first.release()
        (left,) = live_users(settings, "org/a", COMMIT)
        assert left.path == second.path
    finally:
        first.release()
        second.release()
