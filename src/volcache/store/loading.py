"""How weights are read from the volume: memory-mapped, read into memory, or prefetched in parallel.

On a network filesystem, memory-mapped safetensors loading faults in one page at a time and is
reported 5–50× slower than large parallel reads. Copying to local disk is not allowed (I1), so
the lever is how the file is read in place: `prefetch` reads every weight file with several
low-priority threads (as many as the filesystem takes at once) into a small reused buffer, which
fills the page cache while the interpreter imports torch and builds the model; the load then
finds its pages in memory, or waits on those in flight. Nothing is written to disk.
docs/performance.md has the measurements behind `auto`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

log = logging.getLogger("volcache.loading")

Strategy = Literal["mmap", "read", "prefetch"]
CHUNK = 16 * 1024 * 1024
THREADS = 16  # reads in flight on a network filesystem, so per-request latency is hidden
FUSE_BACKGROUND = 12  # the kernel's default `max_background` for a FUSE mount
_BUFFER = 1024 * 1024  # each thread's one reused read buffer
# Filesystems where every read is a network round trip (or a user-space hop).
NETWORK_FS = ("nfs", "nfs4", "ceph", "cifs", "smb3", "smbfs", "glusterfs", "lustre", "9p", "afs", "gpfs", "beegfs",
              "virtiofs", "davfs", "sshfs", "mfs", "juicefs", "weka", "hf-mount")  # fmt: skip
_LOAD_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclasses.dataclass(frozen=True)
class Mount:
    device: str
    point: str
    fstype: str

    @property
    def is_network(self) -> bool:
        return self.fstype.startswith("fuse") or self.fstype in NETWORK_FS or self.device in NETWORK_FS


def mount_of(path: Path, mounts_file: str = "/proc/mounts") -> Mount | None:
    """The mount that holds `path` (after resolving symlinks), from /proc/mounts."""
    real = os.path.realpath(path)
    best: Mount | None = None
    try:
        with open(mounts_file, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = parts[1].replace("\\040", " ")
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and (best is None or len(point) >= len(best.point)):
                    best = Mount(parts[0], point, parts[2])
    except OSError:
        return None
    return best


def weight_files(snapshot: Path) -> list[Path]:
    """The weight files a load reads, resolved to their blobs, largest first."""
    files = {p.resolve() for p in snapshot.rglob("*") if p.name.endswith(_LOAD_SUFFIXES) and p.is_file()}
    return sorted(files, key=lambda p: -p.stat().st_size)


def choose_strategy(requested: str, snapshot: Path) -> Strategy:
    """`auto` picks `prefetch` on network and FUSE filesystems; on a local disk, `mmap` when the weights
    are in the page cache already and `prefetch` when they are not (the faster of the two in each
    case, as `python -m bench netfs` measures: parallel reads beat page faults on a cold disk too,
    but a second pass over cached pages only costs time).
    """
    if requested in ("mmap", "read", "prefetch"):
        return requested  # type: ignore[return-value]
    files = weight_files(snapshot)
    mount = mount_of(files[0] if files else snapshot)
    if mount is not None and mount.is_network:
        return "prefetch"
    return "prefetch" if files and not page_cached(files) else "mmap"


def page_cached(files: Iterable[Path], samples: int = 16) -> bool:
    """True when sampled pages of every file are in the page cache; False when one is not, or no one can tell.

    Reads with `RWF_NOWAIT` (Linux `preadv2`) return EAGAIN instead of waiting for the disk, so
    the probe reads nothing from the disk. Where the flag is missing, the answer is False.
    """
    flag = getattr(os, "RWF_NOWAIT", None)
    if flag is None:
        return False
    buf = bytearray(4096)
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            size = os.fstat(fd).st_size
            for i in range(samples):
                offset = (size * i // samples) // 4096 * 4096
                if os.preadv(fd, [buf], offset, flag) < min(4096, size - offset):
                    return False
        except OSError:  # EAGAIN: not cached; EOPNOTSUPP: this filesystem cannot say
            return False
        finally:
            os.close(fd)
    return True


class Prefetch:
    """Read the weight files into the page cache, in parallel, in the background, at low CPU priority.

    Each thread reads its chunks with `preadv` into one small reused buffer (1 MiB, warm in the
    CPU's cache) and drops the bytes: the point is the page cache, not a copy in this process.
    `posix_fadvise(WILLNEED)` and `readahead(2)` would spare even that copy, but measured here they
    read one read-ahead window per call (1.7 MB of a 200 MB file on the FUSE volume, nothing that
    stayed cached on the local overlay disk), so they cannot be trusted to fill the cache. The
    threads run at nice +10: the interpreter's imports, which the prefetch overlaps, keep the CPU.
    Each file is opened once and its descriptor shared by the threads (`pread` has no file
    position; on a network filesystem every open is a round trip, and on a FUSE mount without
    `keep_cache` an open drops the pages read so far).
    """

    def __init__(self, files: Iterable[Path], threads: int = THREADS, chunk: int = CHUNK) -> None:
        self.files = list(files)
        self.threads = threads
        self.chunk = chunk
        self.bytes_read = 0
        self.seconds = 0.0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def start(self) -> Prefetch:
        self._thread = threading.Thread(target=self._run, name="volcache-prefetch", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> Prefetch:
        self._done.wait(timeout)
        if self._error is not None:
            log.warning("volcache: prefetch stopped early (%s); loading reads the rest", self._error)
        return self

    def _run(self) -> None:
        start = time.perf_counter()
        fds: dict[Path, int] = {}
        local = threading.local()
        try:
            for f in self.files:
                fds[f] = os.open(f, os.O_RDONLY)
            jobs = [
                (fds[f], off, min(self.chunk, size - off))
                for f in self.files
                for size in (os.fstat(fds[f]).st_size,)
                for off in range(0, size, self.chunk)
            ]
            with concurrent.futures.ThreadPoolExecutor(
                self.threads, thread_name_prefix="volcache-prefetch", initializer=_lower_priority
            ) as pool:
                for n in pool.map(lambda job: self._read(job[0], job[1], job[2], local), jobs):
                    with self._lock:
                        self.bytes_read += n
        except OSError as exc:
            self._error = exc
        finally:
            for fd in fds.values():
                os.close(fd)
            self.seconds = time.perf_counter() - start
            self._done.set()

    def _read(self, fd: int, offset: int, length: int, local: threading.local) -> int:
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = memoryview(bytearray(_BUFFER))
        done = 0
        while done < length:
            n = os.preadv(fd, [buf[: min(_BUFFER, length - done)]], offset + done)
            if n <= 0:
                break
            done += n
        return done


def _lower_priority() -> None:
    """Nice +10 for this thread only (Linux: a thread id is a `PRIO_PROCESS` target); best effort."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


def prefetch_threads(snapshot: Path, mounts_file: str = "/proc/mounts") -> int:
    """Reads in flight for the prefetch: what the filesystem takes at once, not more.

    A FUSE mount serves at most `max_background` asynchronous requests at a time (12 by default,
    `/sys/fs/fuse/connections/<dev>/max_background`): more threads only queue in the kernel. A
    network filesystem hides its latency with more requests in flight (16). A local disk needs
    few: the kernel's read-ahead and the device queue do the work (2 per core, at least 4).
    """
    files = weight_files(snapshot)
    mount = mount_of(files[0] if files else snapshot, mounts_file)
    if mount is not None and mount.fstype.startswith("fuse"):
        return _fuse_max_background(files[0] if files else snapshot) or FUSE_BACKGROUND
    if mount is not None and mount.is_network:
        return THREADS
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(THREADS, max(4, 2 * cores))


def _fuse_max_background(path: Path) -> int | None:
    """The FUSE connection's `max_background` for the mount holding `path`; None where it cannot be read."""
    try:
        minor = os.minor(os.stat(path).st_dev)
        value = int(Path(f"/sys/fs/fuse/connections/{minor}/max_background").read_text().strip())
    except (OSError, ValueError):
        return None
    return max(1, min(value, 64))


def start_prefetch(snapshot: Path, strategy: Strategy) -> Prefetch | None:
    """Start reading the weights now, in the background; None unless the strategy is prefetch.

    Call it as early as possible (the worker does, right after the store resolves the
    snapshot) so the reads overlap the imports; the worker hands it to the loader and awaits it.
    """
    if strategy != "prefetch":
        return None
    return Prefetch(weight_files(snapshot), threads=prefetch_threads(snapshot)).start()


def from_pretrained_kwargs(strategy: Strategy) -> dict[str, object]:
    """Keyword arguments for `from_pretrained`: `read` reads each file in one call instead of mapping it.

    `disable_mmap` exists from transformers 5.6 on; older versions map the file whatever we ask.
    """
    if strategy != "read":
        return {}
    import inspect

    from transformers import PreTrainedModel

    if "disable_mmap" in inspect.signature(PreTrainedModel.from_pretrained).parameters:
        return {"disable_mmap": True}
    log.warning("volcache: VOLCACHE_LOAD=read needs transformers >= 5.6; memory-mapping instead")
    return {}
