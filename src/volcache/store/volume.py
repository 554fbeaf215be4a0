"""Facts about the volume's filesystem: transient errors, mounted or not, free space, its clock, symlinks.

Network filesystems answer `EIO` or `ESTALE` now and then and succeed a moment later. Every loop
that touches the volume (lease heartbeat, in-use markers, record and ref reads) goes through
`retry_io`, so one such answer is a short pause, not a lost lease or a "missing" record.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .._errors import SymlinksUnsupported, VolumeIOError, VolumeNotMounted

log = logging.getLogger("volcache.volume")

T = TypeVar("T")
TRANSIENT_ERRNOS = frozenset({errno.EIO, errno.ESTALE, errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT})
IO_ATTEMPTS = 5
IO_BACKOFF = 0.05  # seconds before the second try; doubled each time (0.05 .. 0.8 s)


def is_transient(exc: BaseException) -> bool:
    """True for an I/O error a network filesystem may give once and not again."""
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def retry_io(call: Callable[[], T], *, attempts: int = IO_ATTEMPTS, what: str = "") -> T:
    """`call()`, tried again (bounded, with back-off) while it fails with a transient I/O error.

    Any other error, `FileNotFoundError` included, passes through at once. After the last try the
    transient error is raised as it is (an `OSError`), so callers that tolerate I/O errors still do.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except OSError as exc:
            if not is_transient(exc) or attempt == attempts:
                raise
            log.debug(
                "volcache: transient %s%s (try %d/%d)",
                errno.errorcode.get(exc.errno or 0, "?"),
                what,
                attempt,
                attempts,
            )
            time.sleep(IO_BACKOFF * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def transient_error(exc: OSError, doing: str, path: Path) -> VolumeIOError:
    """The store's error for a transient I/O error that outlasted `retry_io`."""
    return VolumeIOError(
        f"the volume kept failing with {exc.strerror or exc} while {doing} ({path}) after {IO_ATTEMPTS} tries. "
        "Fix: check the volume's health; a restart usually heals it.",
        path=path,
    )


def is_mounted(volume: Path) -> bool:
    """True when `volume` is a mount point of its own (not a folder of the container's root filesystem)."""
    try:
        return os.path.ismount(volume)
    except OSError:
        return False


def require_mounted(volume: Path) -> None:
    """Refuse to start without a mounted volume (`VOLCACHE_REQUIRE_VOLUME=1`); a restart cannot fix this."""
    if not is_mounted(volume):
        raise VolumeNotMounted(
            f"{volume} is not a mount point: no network volume is attached, so every worker would download "
            "its own copy onto the container disk. Fix: attach a network volume to the endpoint (RunPod mounts "
            "it at /runpod-volume) or point VOLCACHE_VOLUME at one; unset VOLCACHE_REQUIRE_VOLUME to allow this.",
            path=volume,
            retryable=False,
        )


def free_bytes(folder: Path) -> int:
    """Free bytes for an unprivileged writer on the filesystem of `folder` (0 when it cannot be read)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def disk_usage(folder: Path) -> tuple[int, int]:
    """(free, total) bytes of the filesystem of `folder`."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def volume_now(scratch: Path) -> float:
    """The volume's clock now: the mtime of a file touched on it this moment (`time.time()` if that fails).

    Files on a shared volume carry the file server's time; comparing them with the local clock
    misjudges their age by the skew between hosts. `scratch` must be a unique path on the volume.
    """
    try:
        scratch.parent.mkdir(parents=True, exist_ok=True)
        scratch.touch()
        return retry_io(lambda: scratch.stat().st_mtime)
    except OSError:
        return time.time()
    finally:
        with contextlib.suppress(OSError):
            scratch.unlink()


def probe_symlinks(folder: Path, symlink: Callable[[str, Path], None] | None = None) -> None:
    """Refuse a cache folder without symlinks: huggingface_hub would then keep a second copy.

    The probe's name is unique per call (two pid-1 containers probing one folder never collide),
    and its absence when removed is not an error.
    """
    make = symlink or (lambda src, dst: os.symlink(src, dst))
    probe = folder / f".volcache-symlink-probe-{uuid.uuid4().hex}"
    try:
        make("blobs/target", probe)
    except OSError as exc:
        raise SymlinksUnsupported(
            f"the cache folder {folder} cannot hold symlinks ({exc.strerror or exc}). Without them "
            "huggingface_hub stores a second copy of every file, breaking the one-copy contract. "
            "Fix: use a volume whose filesystem supports symlinks (RunPod network volumes do), or "
            "point VOLCACHE_VOLUME at one.",
            path=folder,
        ) from None
    with contextlib.suppress(FileNotFoundError):
        probe.unlink()


class ReleasedOnExit:
    """A handle released when its `with` block ends (the lease, an in-use marker)."""

    def release(self) -> None:
        raise NotImplementedError

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.release()


class Heartbeat:
    """A daemon thread that calls `beat()` every `interval` seconds until `stop()` or `beat()` returns False.

    The lease and the in-use markers refresh their files' mtimes with it.
    """

    def __init__(self, beat: Callable[[], bool], interval: float, name: str) -> None:
        self._beat = beat
        self._interval = max(0.05, interval)
        self._name = name
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            if not self._beat():
                return

    def stop(self) -> None:
        """Stop and wait for the thread; safe to call twice or before `start()`."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def refresh(path: Path, what: str) -> bool:
    """Touch `path` (a heartbeat), retrying transient errors; False when the file is gone."""
    try:
        retry_io(lambda: os.utime(path), what=f" refreshing {what}")
    except FileNotFoundError:
        return False
    except OSError as exc:  # still failing after the retries: the next beat tries again
        log.warning("volcache: cannot refresh %s %s: %s", what, path, exc)
    return True


def replace_into(dest: Path, create: Callable[[Path], object]) -> None:
    """Make an entry at a unique temporary name beside `dest` with `create(tmp)`, then rename it over `dest`.

    A reader sees the old entry or the new one, nothing between; the temporary one never stays behind.
    """
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        create(tmp)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
