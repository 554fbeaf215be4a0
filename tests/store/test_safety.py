"""Issue 12's store-side items, each reproduced: transient volume I/O, cleanup that cannot delete what
it protects, a hub cache overlapping a read-only cache, marker ages by the volume's clock, a unique
symlink probe, a missing volume, and the cheap Hub question before a download."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.faults._support import faults_trial
from volcache import (
    ConfigError,
    HubUnavailable,
    LeaseLost,
    ModelNotFound,
    ModelStore,
    VolumeNotMounted,
    remove_stale_caches,
)
from volcache.store import Lease, VolumeLayout, live_users, probe_symlinks, protected_locations
from volcache.store import store as store_module
from volcache.store import volume as volume_module
from volcache.store.lease import pid_scope, read_holder
from volcache.store.volume import require_mounted, retry_io
from volcache.testing import HubEmulator

COMMIT = "c" * 40


def _flaky(
    monkeypatch: pytest.MonkeyPatch, name: str, matches: Callable[[Any], bool], failures: int, err: int
) -> list[int]:
    """Make `os.<name>` (or `Path.<name>`) fail `failures` times with `err` for arguments `matches` accepts."""
    owner: Any = Path if name == "read_text" else os
    real = getattr(owner, name)
    seen = [0]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if matches(args[0]) and seen[0] < failures:
            seen[0] += 1
            raise OSError(err, os.strerror(err))
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)
    monkeypatch.setattr(volume_module, "IO_BACKOFF", 0.001)
    return seen


# -- 2: transient EIO/ESTALE ---------------------------------------------------------------------
@faults_trial("12.2", "ESTALE once on a volume read")
def test_retry_io_retries_transient_errors_only() -> None:
    calls = []

    def once_stale() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.ESTALE, "stale")
        return "ok"

    assert retry_io(once_stale) == "ok" and len(calls) == 2
    with pytest.raises(FileNotFoundError):
        retry_io(lambda: Path("/nonexistent/x").read_text())


@faults_trial("12.2", "EIO x12 on the lease heartbeat")
def test_a_transient_error_in_the_heartbeat_does_not_lose_the_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.lease"
    seen = _flaky(monkeypatch, "utime", lambda p: Path(p) == path, failures=12, err=errno.EIO)
    with Lease(path, timeout=0.4, max_wait=1) as lease:
        deadline = time.monotonic() + 5
        while seen[0] < 12 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen[0] == 12, "the heartbeat stopped at the first EIO"
        before = path.stat().st_mtime
        time.sleep(0.35)
        assert path.stat().st_mtime > before, "the heartbeat did not resume after the errors"
        assert not lease.lost.is_set()
        lease.check()  # still ours
        other = Lease(path, timeout=0.4, max_wait=0.3)
        with pytest.raises(Exception, match="waited"):
            other.acquire()  # a waiter never takes a beating lease over


@faults_trial("12.2", "ESTALE reading the lease file")
def test_a_transient_read_error_is_not_a_lost_lease(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.lease"
    with Lease(path, timeout=5, max_wait=1) as lease:
        _flaky(monkeypatch, "read_text", lambda p: p == path, failures=2, err=errno.ESTALE)
        lease.check()
        assert read_holder(path) is not None


@faults_trial("12.2", "lease file removed, then naming another holder")
def test_the_lease_is_lost_only_when_its_file_names_another_holder(tmp_path: Path) -> None:
    path = tmp_path / "m.lease"
    with Lease(path, timeout=0.4, max_wait=1) as lease:
        path.unlink()  # gone (a takeover in progress, or a hand): not proof of another holder
        time.sleep(0.25)
        assert not lease.lost.is_set()
        other = {"host": "h", "pid": 1, "token": "other", "acquired": time.time(), "pid_scope": pid_scope()}
        path.write_text(json.dumps(other))
        deadline = time.monotonic() + 3
        while not lease.lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lease.lost.is_set()
        with pytest.raises(LeaseLost) as err:
            lease.check()
        assert err.value.retryable and err.value.path == path


@faults_trial("12.2", "lease taken over mid-download")
def test_the_holder_checks_between_files(volume: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore(make_settings(volume, HF_ENDPOINT=hub.url))
    monkeypatch.setattr(store_module, "DOWNLOAD_WORKERS", 1)
    fetched: list[str] = []
    real_fetch = store.hub.fetch

    def fetch_then_lose(repo: Any, model: str, commit: str, f: Any) -> Path:
        fetched.append(f.path)
        blob = real_fetch(repo, model, commit, f)
        other = {"host": "h", "pid": 1, "token": "other", "acquired": time.time(), "pid_scope": ""}
        store.lease_path(model).write_text(json.dumps(other))  # another worker took the lease over
        return blob

    monkeypatch.setattr(store.hub, "fetch", fetch_then_lose)
    with pytest.raises(LeaseLost):
        store.resolve("org/tiny")
    assert len(fetched) == 1, f"kept downloading after the lease was lost: {fetched}"
    assert store.find_local("org/tiny", "main") is None


@faults_trial("12.2", "EIO reading the completion record")
def test_a_transient_error_reading_a_record_is_not_a_missing_record(
    volume: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(make_settings(volume, HF_ENDPOINT=hub.url))
    first = store.resolve("org/tiny")
    _flaky(monkeypatch, "read_text", lambda p: str(p).endswith(".json"), failures=2, err=errno.EIO)
    again = store.resolve("org/tiny")
    assert again.source == "volume" and again.path == first.path


# -- 4: cleanup protects what it must not delete ------------------------------------------------
def _tree(root: Path) -> Path:
    (root / "hub/models--a--b/blobs").mkdir(parents=True)
    (root / "hub/models--a--b/blobs/x").write_bytes(b"w" * 100)
    return root


@pytest.mark.parametrize("case", ["hf-home-inside", "local-model-inside", "extra-cache-inside", "dotdot", "user-home"])
@faults_trial("12.4", "stale-cache entry over a protected location")
def test_cleanup_refuses_protected_locations(tmp_path: Path, volume: Path, case: str) -> None:
    home = tmp_path / "home"
    stale = tmp_path / "cache"
    env: dict[str, str] = {"HOME": str(home)}
    if case == "hf-home-inside":
        env["VOLCACHE_HOME"] = str(_tree(stale / "huggingface"))
        entry = stale
    elif case == "local-model-inside":
        model = stale / "x"
        model.mkdir(parents=True)
        (model / "config.json").write_text("{}")
        env["MODEL_NAME"] = str(model)
        entry = stale
    elif case == "extra-cache-inside":
        env["VOLCACHE_EXTRA_CACHES"] = str(_tree(stale / "baked"))
        entry = stale / "baked" / "hub"
    elif case == "dotdot":  # /data/other/.. is /data, which holds the hub cache
        env["VOLCACHE_HOME"] = str(_tree(stale / "models"))
        (stale / "other").mkdir()
        entry = stale / "other" / ".."
    else:
        home.mkdir()
        (home / ".bashrc").write_text("x")
        entry = home
    settings = make_settings(volume, **env)
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    report = remove_stale_caches([entry], settings.volume, protected_locations(settings))
    assert report.removed == () and len(report.refused) == 1, report
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == before


@faults_trial("12.4", "stale cache inside $HOME still removed")
def test_cleanup_still_deletes_a_stale_cache_inside_the_home_folder(tmp_path: Path, volume: Path) -> None:
    home = tmp_path / "home"
    stale = _tree(home / ".cache/huggingface")
    settings = make_settings(volume, HOME=str(home))
    report = remove_stale_caches([stale], settings.volume, protected_locations(settings))
    assert report.removed == ((stale, 100),) and not stale.exists() and home.is_dir()


# -- 6: the hub cache may not overlap a read-only cache -----------------------------------------
@pytest.mark.parametrize("where", ["inside", "contains", "extra"])
@faults_trial("12.6", "hub cache overlapping a read-only cache")
def test_settings_refuse_a_hub_cache_overlapping_a_read_only_cache(volume: Path, where: str) -> None:
    env = {
        "inside": {"VOLCACHE_HOME": str(volume / "huggingface-cache")},
        "contains": {"VOLCACHE_RUNPOD_CACHE": str(volume / "models/hub/deeper")},
        "extra": {"VOLCACHE_EXTRA_CACHES": str(volume / "models")},
    }[where]
    with pytest.raises(ConfigError) as err:
        make_settings(volume, **env)
    assert "overlaps the read-only cache" in str(err.value) and not err.value.retryable


# -- 5: marker ages by the volume's clock --------------------------------------------------------
@faults_trial("12.5", "prune host clock 10 min ahead")
def test_a_prune_host_whose_clock_runs_ahead_still_sees_foreign_markers_live(
    volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(volume, VOLCACHE_LEASE_TIMEOUT="120")
    folder = VolumeLayout.of(settings).inuse_dir("org/a", COMMIT)
    folder.mkdir(parents=True)
    holder = {"host": "elsewhere", "pid": 7, "token": "t", "acquired": time.time(), "pid_scope": "other"}
    (folder / "elsewhere-7-t.json").write_text(json.dumps(holder))  # fresh, by the volume's clock
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 600)  # this host is 10 minutes ahead
    users = live_users(settings, "org/a", COMMIT)
    assert [u.holder.host for u in users if u.holder] == ["elsewhere"]
    assert users[0].age < 60


# -- 7: a unique symlink probe --------------------------------------------------------------------
@faults_trial("12.7", "8 x 40 symlink probes with one pid")
def test_symlink_probes_of_processes_with_one_pid_never_collide(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def probe() -> None:
        try:
            for _ in range(40):
                probe_symlinks(tmp_path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=probe) for _ in range(8)]  # threads share one pid, as pid-1 containers do
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and list(tmp_path.iterdir()) == []


# -- 3 and 13: a missing volume, and the cheap question first -----------------------------------
@faults_trial("12.3", "VOLCACHE_REQUIRE_VOLUME=1, no mount")
def test_a_volume_that_is_not_a_mount_point_is_refused_when_required(volume: Path) -> None:
    settings = make_settings(volume, VOLCACHE_REQUIRE_VOLUME="1")
    assert settings.require_volume
    with pytest.raises(VolumeNotMounted) as err:
        require_mounted(settings.volume)
    assert err.value.path == volume and not err.value.retryable


@faults_trial("12.13", "cheap Hub question: missing / down")
def test_the_cheap_hub_question_says_whether_a_restart_can_help(volume: Path, hub: HubEmulator) -> None:
    store = ModelStore(make_settings(volume, HF_ENDPOINT=hub.url))
    assert store.check_remote("org/tiny") == hub.commit_sha("org/tiny")
    with pytest.raises(ModelNotFound) as missing:
        store.check_remote("org/missing")
    assert missing.value.model == "org/missing" and not missing.value.retryable
    dead = ModelStore(make_settings(volume, HF_ENDPOINT="http://127.0.0.1:9"))
    monkey_fast = pytest.MonkeyPatch()
    monkey_fast.setattr("volcache.store.hub.time.sleep", lambda s: None)
    try:
        with pytest.raises(HubUnavailable) as down:
            dead.check_remote("org/tiny")
    finally:
        monkey_fast.undo()
    assert down.value.retryable and down.value.model == "org/tiny"
    assert list(volume.iterdir()) == [], "the cheap question writes nothing"


def test_hold_marks_the_snapshot_in_use(volume: Path, hub: HubEmulator) -> None:
    store = ModelStore(make_settings(volume, HF_ENDPOINT=hub.url))
    held = store.hold(store.resolve("org/tiny"))
    try:
        commit = held.resolution.commit or ""
        assert [u.holder.pid for u in live_users(store.settings, "org/tiny", commit) if u.holder] == [os.getpid()]
        assert VolumeLayout.of(store.settings).used_marker("org/tiny", commit).exists()
    finally:
        held.release()
    assert live_users(store.settings, "org/tiny", commit) == []
