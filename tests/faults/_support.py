"""Shared pieces of the fault-injection suite: trial counts, model checks, the subprocess driver, results.

Environment (read here, by the tests; volcache itself reads only `Settings.from_env`):

- ``VOLCACHE_FAULT_TRIALS`` (default 6): SIGKILL trials; other randomized families run
  ``max(1, trials // 6)`` rounds. `bench/reliability.py` runs 24.
- ``VOLCACHE_FAULT_SEED`` (default 5): seed of every random choice (kill moments, variants).
- ``VOLCACHE_FAULT_RESULTS``: a JSON-lines file to append one line per trial to (the report reads it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli, subprocess_env

DRIVER = Path(__file__).with_name("_driver.py")
TOKEN = "hf_FaultSuiteSecretToken0123456789abcdef"


def kill_trials() -> int:
    return max(1, int(os.environ.get("VOLCACHE_FAULT_TRIALS", "6")))


def rounds() -> int:
    """Repetitions of the other randomized families (many workers, full disk, foreign leases)."""
    return max(1, kill_trials() // 6)


def seed() -> int:
    return int(os.environ.get("VOLCACHE_FAULT_SEED", "5"))


# -- the model a test expects ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Expected:
    """The files of one model that the store must put on the volume, by path: (size, sha256)."""

    repo: str
    files: Mapping[str, tuple[int, str]]

    @property
    def bytes(self) -> int:
        return sum(size for size, _ in self.files.values())

    @classmethod
    def from_folder(cls, repo: str, folder: Path, needed: list[str]) -> Expected:
        files = {}
        for name in needed:
            data = (folder / name).read_bytes()
            files[name] = (len(data), hashlib.sha256(data).hexdigest())
        return cls(repo, files)


def repo_dir(volume: Path, repo: str) -> Path:
    return volume / "models" / "hub" / ("models--" + repo.replace("/", "--"))


def snapshot_dirs(volume: Path, repo: str) -> list[Path]:
    snaps = repo_dir(volume, repo) / "snapshots"
    return sorted(snaps.iterdir()) if snaps.is_dir() else []


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def bad_bytes(volume: Path, expected: Expected, snapshot: Path | None = None) -> tuple[int, list[str]]:
    """Bytes of `expected` that are missing or wrong in its snapshot, and why (empty list: it verifies)."""
    if snapshot is None:
        snaps = snapshot_dirs(volume, expected.repo)
        if len(snaps) != 1:
            return expected.bytes, [f"{len(snaps)} snapshot folders for {expected.repo}, expected 1"]
        snapshot = snaps[0]
    blobs = (repo_dir(volume, expected.repo) / "blobs").resolve()
    lost, problems = 0, []
    for name, (size, digest) in expected.files.items():
        link = snapshot / name
        if not link.exists():
            lost += size
            problems.append(f"{name}: missing")
            continue
        target = link.resolve()
        if not link.is_symlink() or target.parent != blobs:
            problems.append(f"{name}: not a link into blobs/ ({target})")
        got = sha256_file(target)
        if got != digest:
            lost += size
            problems.append(f"{name}: sha256 {got[:12]}… != {digest[:12]}…")
    return lost, problems


def weight_bytes(volume: Path) -> int:
    """Bytes of every regular file on the volume outside volcache's records and the refs: blobs,
    partial downloads, and any copy that should not exist. One complete model gives 1.00x its size."""
    total = 0
    for root, dirs, files in os.walk(volume):
        dirs[:] = [d for d in dirs if d not in (".volcache", "refs", ".locks")]
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path) and name != "CACHEDIR.TAG":
                total += os.stat(path).st_size
    return total


def incomplete_files(volume: Path) -> list[Path]:
    """Partial downloads: huggingface_hub's `.incomplete` files and volcache's multi-stream staged files."""
    from volcache.store.hub import RANGED_NAME

    found = []
    for folder, _, names in os.walk(volume):  # folders that vanish meanwhile (a staging folder) are skipped
        found += [Path(folder, n) for n in names if n.endswith(".incomplete") or n == RANGED_NAME]
    return sorted(found)


def ls_json(volume: Path, **env: str) -> list[dict[str, Any]]:
    proc = run_cli("ls", "--json", env=subprocess_env(volume, **env), check=True)
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    return rows


def complete_but_wrong(volume: Path, expected: Expected) -> list[str]:
    """`volcache ls` rows that say complete for a snapshot that does not verify (must stay empty)."""
    wrong = []
    for row in ls_json(volume):
        if row["model"] == expected.repo and row["state"] == "complete":
            lost, problems = bad_bytes(volume, expected, Path(row["path"]))
            if lost or problems:
                wrong.append(f"{row['path']} listed complete but {problems}")
    return wrong


# -- waiting without timed assertions ------------------------------------------------------------------
def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- the subprocess driver ---------------------------------------------------------------------------
def spawn(
    env: Mapping[str, str],
    *args: str,
    pause_at: str | None = None,
    marker: Path | None = None,
    no_flock: bool = False,
    wait_log_interval: float | None = None,
) -> subprocess.Popen[str]:
    """Start `_driver.py` (a worker or `volcache fetch` with test hooks) in its own process group."""
    cmd = [sys.executable, str(DRIVER)]
    if pause_at is not None:
        assert marker is not None
        cmd += ["--pause-at", pause_at, "--marker", str(marker)]
    if no_flock:
        cmd.append("--no-flock")
    if wait_log_interval is not None:
        cmd += ["--wait-log-interval", str(wait_log_interval)]
    return subprocess.Popen(
        [*cmd, *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def sigkill(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGKILL the process (no cleanup runs), reap it, and return what it had written."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    return out, err


# -- results for bench/reliability.py ------------------------------------------------------------------
@dataclasses.dataclass
class Trial:
    fault: str
    lost: int = 0  # bytes of a model that are missing or wrong after recovery
    duplicated: int = 0  # bytes on the volume beyond one copy of each model
    refetched: int = 0  # bytes the Hub served beyond one copy (a killed download starts again)
    seconds: float | None = None
    note: str = ""
    item: str = ""  # the issue item the trial covers, e.g. "12.2" (else the report's per-module default)


class TrialLog:
    """Writes one JSON line per trial to VOLCACHE_FAULT_RESULTS, when set: whether the contract held."""

    def __init__(self, test: str) -> None:
        raw = os.environ.get("VOLCACHE_FAULT_RESULTS")
        self.path = Path(raw) if raw else None
        self.test = test

    @contextlib.contextmanager
    def trial(self, fault: str, item: str = "") -> Iterator[Trial]:
        t = Trial(fault, item=item)
        survived = False
        try:
            yield t
            survived = True
        finally:
            self._write(t, survived)

    def _write(self, t: Trial, survived: bool) -> None:
        if self.path is None:
            return
        line = dict(dataclasses.asdict(t), survived=survived, test=self.test)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def run_trials(count: int, one: Callable[[int], None]) -> None:
    """Run every trial even when one fails (the report counts them all), then fail with each reason."""
    failures = []
    for i in range(count):
        try:
            one(i)
        except AssertionError as exc:
            failures.append(f"trial {i}: {exc}")
    assert not failures, f"{len(failures)} of {count} trials broke the contract:\n" + "\n".join(failures)


def faults_trial(item: str, fault: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a test as a fault trial of `item` (pytest marker `faults`) and log it for the report."""

    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(test)
        def run(*args: Any, **kwargs: Any) -> None:
            with TrialLog(f"{test.__module__}::{test.__name__}").trial(fault, item=item) as t:
                t.note = "-"
                test(*args, **kwargs)

        marked: Callable[..., None] = pytest.mark.faults(run)
        return marked

    return decorate
