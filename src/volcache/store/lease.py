"""A download lease on the shared volume that works where `flock` does not (I3).

RunPod volumes are a distributed filesystem on which `flock` can succeed for every
caller. The lease is a file created with O_EXCL, naming its holder (host, pid namespace, pid, token);
the holder refreshes its mtime (the heartbeat) every `timeout / 4` seconds. A waiter
takes a lease over when it has watched the heartbeat stand still for `timeout` seconds
of its own monotonic clock (no cross-host clock comparison), or at once when the holder
is a dead process on this host and in this pid namespace (two containers may share a host
name and a pid number; they never share a boot id and a pid namespace). Takeover is
serialised by a second O_EXCL file so that two waiters never both take over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from .._errors import LeaseLost, LeaseTimeout
from .._settings import StoreSettings
from .layout import VolumeLayout
from .volume import Heartbeat, ReleasedOnExit, refresh, retry_io

log = logging.getLogger("volcache.lease")

WAIT_LOG_INTERVAL = 10.0


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a lease, as written in the lease file."""

    host: str
    pid: int
    token: str
    acquired: float
    purpose: str = ""
    pid_scope: str = ""  # which pids `pid` is one of: the boot and the pid namespace (Linux), else ""

    @classmethod
    def me(cls, purpose: str = "") -> Holder:
        return cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex, time.time(), purpose, pid_scope())

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def read_holder(path: Path) -> Holder | None:
    """The holder named in a lease file, or None if it is gone or unreadable (being written)."""
    try:
        data = json.loads(retry_io(path.read_text))
        return Holder(
            str(data["host"]),
            int(data["pid"]),
            str(data["token"]),
            float(data["acquired"]),
            str(data.get("purpose", "")),
            str(data.get("pid_scope", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_scope() -> str:
    """This boot's id and this process's pid namespace: where a pid names the same process ("" if unknown)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        ns = os.stat("/proc/self/ns/pid")
    except OSError:
        return ""
    return f"{boot}:{ns.st_dev}:{ns.st_ino}"


def is_here(holder: Holder) -> bool:
    """True when the holder's pid names a process we can see: same host name, boot and pid namespace."""
    return holder.host == socket.gethostname() and holder.pid_scope == pid_scope()


def holder_is_dead(holder: Holder) -> bool:
    """True only when the holder is provably dead: a process here (`is_here`) that no longer exists."""
    if not is_here(holder):
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(holder.pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class Lease(ReleasedOnExit):
    """An exclusive, heartbeated lease file. Use as a context manager.

    >>> with Lease(path, timeout=120, max_wait=3600):
    ...     download()
    """

    def __init__(
        self,
        path: Path,
        *,
        timeout: float,
        max_wait: float,
        purpose: str = "",
        on_wait: Callable[[Holder | None, float], None] | None = None,
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.max_wait = max_wait
        self.holder = Holder.me(purpose)
        self.lost = threading.Event()
        self._beat = Heartbeat(self._heartbeat, timeout / 4, "volcache-lease")
        self._on_wait = on_wait

    # -- acquire -------------------------------------------------------------------------
    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        last_log = start
        watched: tuple[float, str] | None = None  # (mtime, token) of the lease we watch
        watched_since = start
        while True:
            if self._try_create():
                self._start_heartbeat()
                return
            holder = read_holder(self.path)
            now = time.monotonic()
            seen = self._observe()
            if seen != watched:
                watched, watched_since = seen, now
            stale = seen is not None and now - watched_since >= self.timeout
            if holder is not None and holder_is_dead(holder):
                stale = True
            if stale and watched is not None:
                self._take_over(watched[1], holder)
                continue
            if now - start >= self.max_wait:
                who = holder.describe() if holder else "another worker"
                raise LeaseTimeout(
                    f"waited {now - start:.0f}s for the download lease {self.path} held by {who}; "
                    "it is still alive. Raise VOLCACHE_LEASE_MAX_WAIT, or check that worker."
                )
            if now - last_log >= WAIT_LOG_INTERVAL:
                last_log = now
                who = holder.describe() if holder else "another worker"
                log.info(
                    "volcache: waiting for %s to finish downloading (lease %s, %.0fs so far)",
                    who,
                    self.path.name,
                    now - start,
                )
                if self._on_wait:
                    self._on_wait(holder, now - start)
            time.sleep(min(0.5, max(0.05, self.timeout / 20)))

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(dataclasses.asdict(self.holder), f)
            f.flush()
            os.fsync(f.fileno())
        # O_EXCL is not atomic on every network filesystem: confirm the file names us.
        return self.owned()

    def _observe(self) -> tuple[float, str] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        holder = read_holder(self.path)
        return (st.st_mtime, holder.token if holder else "?")

    def _take_over(self, token: str, holder: Holder | None) -> None:
        guard = self.path.with_name(self.path.name + ".takeover")
        try:
            fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            self._clear_stale_guard(guard)
            return
        os.close(fd)
        try:
            current = read_holder(self.path)
            if (current.token if current else "?") == token:
                who = holder.describe() if holder else "an unknown holder"
                log.warning("volcache: taking over the stale lease %s from %s", self.path.name, who)
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        finally:
            with contextlib.suppress(FileNotFoundError):
                guard.unlink()

    def _clear_stale_guard(self, guard: Path) -> None:
        # The takeover guard lives for milliseconds; one older than the time-out is debris
        # of a process killed in that window.
        with contextlib.suppress(FileNotFoundError):
            if time.time() - guard.stat().st_mtime > self.timeout:
                guard.unlink()

    # -- hold ----------------------------------------------------------------------------
    def owned(self) -> bool:
        """True when the lease file names this holder now."""
        current = read_holder(self.path)
        return current is not None and current.token == self.holder.token

    def taken_by_other(self) -> bool:
        """True only when the lease file names another holder: a missing or unreadable file is not proof."""
        current = read_holder(self.path)
        return current is not None and current.token != self.holder.token

    def check(self) -> None:
        """Raise `LeaseLost` if another worker holds the lease now; call it between files."""
        if self.lost.is_set() or self.taken_by_other():
            self.lost.set()
            raise LeaseLost(f"lost the download lease {self.path.name} to another worker; retry.", path=self.path)

    def _start_heartbeat(self) -> None:
        self._beat.start()

    def _heartbeat(self) -> bool:
        """One beat: stop only when the file names another holder; any I/O error waits for the next beat."""
        if self.taken_by_other():
            log.error("volcache: lost the lease %s to another worker", self.path.name)
            self.lost.set()
            return False
        refresh(self.path, "the lease")
        return True

    # -- release -------------------------------------------------------------------------
    def release(self) -> None:
        self._beat.stop()
        if self.owned():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> Lease:
        self.acquire()
        return self


def model_lease(
    settings: StoreSettings,
    model: str,
    purpose: str,
    *,
    max_wait: float | None = None,
    on_wait: Callable[[Holder | None, float], None] | None = None,
) -> Lease:
    """The download lease of `model`, held by whoever writes or removes its files (download, repair, prune)."""
    return Lease(
        VolumeLayout.of(settings).lease(model),
        timeout=settings.lease_timeout,
        max_wait=settings.lease_max_wait if max_wait is None else max_wait,
        purpose=purpose,
        on_wait=on_wait,
    )
