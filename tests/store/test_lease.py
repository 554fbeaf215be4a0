from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from volcache import LeaseTimeout
from volcache.store import lease as _lease
from volcache.store.lease import Lease, read_holder


def _plant(path: Path, host: str, pid: int, age: float = 0.0, scope: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scope = _lease.pid_scope() if scope is None else scope
    data = {"host": host, "pid": pid, "token": "t-other", "acquired": time.time() - age, "pid_scope": scope}
    path.write_text(json.dumps(data))
    os.utime(path, (time.time() - age, time.time() - age))


def test_acquire_writes_identity_and_release_removes(tmp_path: Path) -> None:
    path = tmp_path / "locks/m.lease"
    with Lease(path, timeout=5, max_wait=5, purpose="test") as lease:
        holder = read_holder(path)
        assert holder is not None and holder.pid == os.getpid() and holder.token == lease.holder.token
    assert not path.exists()


def test_second_waits_for_first(tmp_path: Path) -> None:
    path = tmp_path / "m.lease"
    order: list[str] = []
    first = Lease(path, timeout=5, max_wait=5)
    first.acquire()

    def other() -> None:
        with Lease(path, timeout=5, max_wait=5):
            order.append("second")

    t = threading.Thread(target=other)
    t.start()
    time.sleep(0.5)
    order.append("first-done")
    first.release()
    t.join(5)
    assert order == ["first-done", "second"]


def test_heartbeat_keeps_a_live_lease_fresh(tmp_path: Path) -> None:
    path = tmp_path / "m.lease"
    with Lease(path, timeout=0.4, max_wait=5):
        before = path.stat().st_mtime
        time.sleep(0.5)
        assert path.stat().st_mtime > before


def test_stale_lease_of_another_host_is_taken_over_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "m.lease"
    _plant(path, "some-other-host", 4242, age=3600)
    start = time.monotonic()
    with Lease(path, timeout=1.0, max_wait=10) as lease:
        waited = time.monotonic() - start
        assert read_holder(path).token == lease.holder.token  # type: ignore[union-attr]
    assert 0.9 <= waited < 3.0


def test_dead_holder_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    path = tmp_path / "m.lease"
    import socket

    _plant(path, socket.gethostname(), proc.pid)
    start = time.monotonic()
    with Lease(path, timeout=30, max_wait=10):
        assert time.monotonic() - start < 2.0


def test_a_dead_pid_in_another_container_with_our_host_name_is_not_trusted(tmp_path: Path) -> None:
    """Two containers can share a host name and a pid number: only a matching pid namespace proves death."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    path = tmp_path / "m.lease"
    import socket

    other = "another-boot-id:0:4026531836"
    assert other != _lease.pid_scope()
    _plant(path, socket.gethostname(), proc.pid, scope=other)
    holder = read_holder(path)
    assert holder is not None and not _lease.is_here(holder) and not _lease.holder_is_dead(holder)
    start = time.monotonic()
    with Lease(path, timeout=1.0, max_wait=10):  # taken over only once the heartbeat stood still for the time-out
        assert time.monotonic() - start >= 0.9


def test_live_lease_is_waited_for_with_log_lines_then_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_lease, "WAIT_LOG_INTERVAL", 0.3)
    path = tmp_path / "m.lease"
    _plant(path, "busy-host", 1)
    stop = threading.Event()

    def heartbeat() -> None:  # the other host keeps its lease alive
        while not stop.wait(0.1):
            os.utime(path)

    t = threading.Thread(target=heartbeat)
    t.start()
    try:
        with caplog.at_level(logging.INFO, logger="volcache.lease"), pytest.raises(LeaseTimeout, match="busy-host"):
            Lease(path, timeout=0.5, max_wait=1.5).acquire()
    finally:
        stop.set()
        t.join()
    assert sum("waiting for pid 1 on busy-host" in r.message for r in caplog.records) >= 2
    assert read_holder(path).host == "busy-host"  # type: ignore[union-attr]


_COUNTER = """
import fcntl, sys, time
from pathlib import Path
fcntl.flock = lambda *a, **k: None  # a network filesystem where flock silently succeeds
from volcache.store.lease import Lease
lease_path, counter = Path(sys.argv[1]), Path(sys.argv[2])
for _ in range(15):
    with Lease(lease_path, timeout=10, max_wait=60):
        n = int(counter.read_text())
        time.sleep(0.002)
        counter.write_text(str(n + 1))
"""


def test_mutual_exclusion_across_processes_without_flock(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    procs = [
        subprocess.Popen([sys.executable, "-c", _COUNTER, str(tmp_path / "c.lease"), str(counter)]) for _ in range(4)
    ]
    assert all(p.wait(120) == 0 for p in procs)
    assert counter.read_text() == "60"
