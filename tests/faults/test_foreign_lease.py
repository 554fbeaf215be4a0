"""A download lease held by a worker on another host, with `flock` a no-op in every worker (I3).

tests/store/test_lease.py covers the `Lease` class in-process. Here `volcache fetch` runs as a
separate process against a lease file that another machine left on the shared volume; every
fetch runs with `fcntl.flock` and `lockf` turned into no-ops, as on network filesystems where
they silently succeed, so the lease file is the only thing that can keep the workers apart.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.faults._support import Expected, TrialLog, bad_bytes, incomplete_files, rounds, spawn, weight_bytes
from volcache.testing import HubEmulator

pytestmark = pytest.mark.faults

TINY = "org/tiny"
TIMEOUT = 2.0
SLACK = 60.0
OTHER_HOST = "other-host.invalid"


@pytest.fixture
def tiny(hub_root: Path) -> Expected:
    return Expected.from_folder(TINY, hub_root / "org" / "tiny", ["config.json", "tokenizer.json", "model.safetensors"])


def _lease_file(volume: Path) -> Path:
    return volume / "models/.volcache/locks/models--org--tiny.lease"


def _plant(volume: Path, content: str, age: float) -> Path:
    lease = _lease_file(volume)
    lease.parent.mkdir(parents=True, exist_ok=True)
    lease.write_text(content)
    os.utime(lease, (time.time() - age, time.time() - age))
    return lease


def _holder(pid: int = 4242, host: str = OTHER_HOST) -> str:
    return json.dumps({"host": host, "pid": pid, "token": "other-token", "acquired": time.time() - 60})


def _fetch(volume: Path, hub: HubEmulator, **env: str) -> tuple[int, str, float]:
    """`volcache fetch org/tiny` with flock a no-op; returns (exit code, stderr, seconds)."""
    environment = subprocess_env(volume, HF_ENDPOINT=hub.url, VOLCACHE_LEASE_TIMEOUT=str(TIMEOUT), **env)
    start = time.monotonic()
    proc = spawn(environment, "fetch", TINY, no_flock=True, wait_log_interval=0.5)
    _, err = proc.communicate(timeout=TIMEOUT + SLACK + 60)
    return proc.returncode, err, time.monotonic() - start


class _OtherHost:
    """A worker on another machine: keeps its lease fresh until it finishes or dies."""

    def __init__(self, lease: Path) -> None:
        self.lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(0.2):
            os.utime(self.lease)

    def __enter__(self) -> _OtherHost:
        self._thread.start()
        return self

    def stop(self, *, release: bool) -> None:
        self._stop.set()
        self._thread.join()
        if release:
            self.lease.unlink(missing_ok=True)

    def __exit__(self, *exc: object) -> None:
        self.stop(release=False)


@pytest.mark.parametrize(
    ("content", "readable"),
    [(_holder(), True), ("", False), ('{"host": "half-writ', False)],
    ids=["another-host", "empty-file-holder-killed-while-creating-it", "garbage"],
)
def test_a_stale_lease_is_taken_over_after_the_timeout_and_no_sooner(
    content: str, readable: bool, tmp_path: Path, hub: HubEmulator, tiny: Expected, trial_log: TrialLog
) -> None:
    for r in range(rounds()):
        with trial_log.trial("stale lease of another host, flock a no-op") as trial:
            volume = tmp_path / f"volume-{r}"
            volume.mkdir()
            hub.reset_stats()
            _plant(volume, content, age=3600)
            code, err, trial.seconds = _fetch(volume, hub)
            trial.lost, problems = bad_bytes(volume, tiny)
            trial.duplicated = weight_bytes(volume) - tiny.bytes
            assert code == 0, err[-3000:]
            assert "taking over the stale lease" in err, err[-3000:]
            if readable:
                assert f"pid 4242 on {OTHER_HOST}" in err, "the takeover log line must name the old holder"
            # The waiter watches the heartbeat on its own clock: it cannot take over before TIMEOUT.
            assert trial.seconds >= TIMEOUT, f"took over after {trial.seconds:.2f}s, before the {TIMEOUT}s time-out"
            assert trial.seconds < TIMEOUT + SLACK
            assert problems == [] and trial.duplicated == 0
            assert set(hub.stats.per_file.values()) == {1}
            assert not _lease_file(volume).exists(), "the lease must be released after the download"


def test_a_live_lease_of_another_host_is_waited_for_with_log_lines_then_refused(
    tmp_path: Path, hub: HubEmulator, trial_log: TrialLog
) -> None:
    with trial_log.trial("live lease of another host: bounded wait") as trial:
        volume = tmp_path / "volume"
        volume.mkdir()
        lease = _plant(volume, _holder(), age=0)
        with _OtherHost(lease):
            code, err, trial.seconds = _fetch(volume, hub, VOLCACHE_LEASE_MAX_WAIT="4")
        lines = err.strip().splitlines()
        assert code == 1, err[-3000:]
        assert lines[-1].startswith("volcache: error: waited"), lines[-1]
        assert f"pid 4242 on {OTHER_HOST}" in lines[-1] and "VOLCACHE_LEASE_MAX_WAIT" in lines[-1], lines[-1]
        waiting = [line for line in lines if f"waiting for pid 4242 on {OTHER_HOST}" in line]
        assert len(waiting) >= 2, f"expected periodic wait log lines, got:\n{err[-3000:]}"
        assert trial.seconds >= 4, "refused before VOLCACHE_LEASE_MAX_WAIT"
        assert hub.stats.file_requests == 0, "nothing may be downloaded while another host holds the lease"
        assert json.loads(lease.read_text())["host"] == OTHER_HOST, "a live lease must never be taken over"
        assert weight_bytes(volume) == 0 and "Traceback" not in err


@pytest.mark.parametrize("ending", ["finishes", "dies"])
def test_a_waiter_proceeds_when_the_other_host_finishes_or_dies(
    ending: str, tmp_path: Path, hub: HubEmulator, tiny: Expected, trial_log: TrialLog
) -> None:
    with trial_log.trial(f"live lease of another host, which then {ending}") as trial:
        volume = tmp_path / "volume"
        volume.mkdir()
        lease = _plant(volume, _holder(), age=0)
        env = subprocess_env(volume, HF_ENDPOINT=hub.url, VOLCACHE_LEASE_TIMEOUT=str(TIMEOUT))
        with _OtherHost(lease) as other:
            waiter = spawn(env, "fetch", TINY, no_flock=True, wait_log_interval=0.5)
            time.sleep(2 * TIMEOUT)  # longer than the time-out: a live heartbeat must keep it waiting
            assert waiter.poll() is None, "the waiter gave up or took over a live lease"
            assert hub.stats.file_requests == 0
            other.stop(release=ending == "finishes")
            stopped = time.monotonic()
        _out, err = waiter.communicate(timeout=TIMEOUT + SLACK + 60)
        trial.seconds = time.monotonic() - stopped
        trial.lost, problems = bad_bytes(volume, tiny)
        trial.duplicated = weight_bytes(volume) - tiny.bytes
        assert waiter.returncode == 0, err[-3000:]
        assert problems == [] and trial.duplicated == 0 and incomplete_files(volume) == []
        if ending == "dies":  # its heartbeat stood still: taken over after the time-out, logged
            assert "taking over the stale lease" in err, err[-3000:]
            # Its last beat was at most 0.2 s before `stopped`; the waiter watches for TIMEOUT after it.
            assert trial.seconds >= TIMEOUT - 0.5, f"took over {trial.seconds:.2f}s after the last heartbeat"
        else:
            assert "taking over" not in err


def test_debris_of_a_takeover_killed_midway_blocks_no_longer_than_the_timeout(
    tmp_path: Path, hub: HubEmulator, tiny: Expected, trial_log: TrialLog
) -> None:
    with trial_log.trial("stale lease + takeover guard of a killed waiter") as trial:
        volume = tmp_path / "volume"
        volume.mkdir()
        lease = _plant(volume, _holder(), age=3600)
        guard = lease.with_name(lease.name + ".takeover")
        guard.touch()  # a waiter was SIGKILLed inside its takeover, just now
        code, err, trial.seconds = _fetch(volume, hub)
        trial.lost, problems = bad_bytes(volume, tiny)
        trial.duplicated = weight_bytes(volume) - tiny.bytes
        assert code == 0, err[-3000:]
        assert trial.seconds < 2 * TIMEOUT + SLACK
        assert problems == [] and trial.duplicated == 0
        assert not guard.exists() and not lease.exists()
