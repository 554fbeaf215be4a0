"""A simulated network volume: a read-only FUSE passthrough with per-request latency and bandwidth caps.

It speaks the kernel's FUSE protocol on ``/dev/fuse`` directly (no libfuse, no fusepy), so it
needs only root (or CAP_SYS_ADMIN) and ``/dev/fuse``; `available()` says why not where it
cannot mount, and the benchmark skips its section. How a request is served:

- the kernel sends READs of at most ``max_read`` bytes (128 KiB by default, libfuse 2's and the
  kernel's default request size) and its readahead window (128 KiB);
- each READ waits ``latency`` seconds (the round trip to a storage server), then ``size ÷
  stream_bandwidth`` (one stream's transfer time), and all READs together share an aggregate
  ``bandwidth`` (a token bucket): then the bytes are read from the source folder with ``pread``;
- metadata (LOOKUP, GETATTR, READLINK, READDIR) is served at once and cached by the kernel for
  60 s, files are opened with ``FOPEN_KEEP_CACHE`` (the page cache survives a close, as it
  does on MooseFS-style volumes for files that did not change), so a second read is served
  from memory, as on a real mount.

Run it as ``python -m bench._fuse SOURCE MOUNTPOINT [--latency 0.001 ...]``; it mounts, writes
``--ready`` when the mount answers, serves until the mount point is unmounted (``umount -l``),
and then writes its request counts to ``--stats`` as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import stat
import struct
import threading
import time
from pathlib import Path

FSTYPE = "fuse.volcache-netfs"
# Opcodes (linux/fuse.h).
LOOKUP, FORGET, GETATTR, READLINK, OPEN, READ, STATFS, RELEASE = 1, 2, 3, 5, 14, 15, 17, 18
GETXATTR, LISTXATTR, FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR = 22, 23, 25, 26, 27, 28, 29
ACCESS, INTERRUPT, DESTROY, BATCH_FORGET, READDIRPLUS, LSEEK, STATX = 34, 36, 38, 42, 44, 46, 52
_NO_REPLY = (FORGET, BATCH_FORGET, INTERRUPT)
# INIT flags we ask for: parallel async reads (as libfuse does by default) and larger requests.
FUSE_ASYNC_READ, FUSE_BIG_WRITES, FUSE_PARALLEL_DIROPS, FUSE_MAX_PAGES = 1 << 0, 1 << 5, 1 << 18, 1 << 22
FOPEN_KEEP_CACHE = 1 << 1
_IN_HEADER = struct.Struct("<IIQQIIIHH")  # len, opcode, unique, nodeid, uid, gid, pid, total_extlen, padding
_OUT_HEADER = struct.Struct("<IiQ")  # len, error, unique
_ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
_READ_IN = struct.Struct("<QQII")  # fh, offset, size, read_flags (the rest is unused here)
_MS_NOSUID, _MS_NODEV, _MS_RDONLY, _MNT_DETACH = 2, 4, 1, 2
_TTL = 60  # seconds the kernel may cache names and attributes


def available() -> str | None:
    """None when this process can mount a FUSE filesystem, else the reason it cannot."""
    if not hasattr(os, "geteuid") or not Path("/dev/fuse").exists():
        return "/dev/fuse does not exist"
    if os.geteuid() != 0:
        return "mounting needs root (CAP_SYS_ADMIN)"
    try:
        fs = Path("/proc/filesystems").read_text()
    except OSError:
        fs = ""
    if "fuse" not in fs.split():
        return "the kernel has no fuse filesystem"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as exc:
        return f"cannot open /dev/fuse ({exc.strerror})"
    return None


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def unmount(mountpoint: str | Path) -> None:
    """Detach the mount (the daemon then exits); quiet if it is not mounted."""
    if _libc().umount2(os.fsencode(str(mountpoint)), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {mountpoint}: {os.strerror(err)}")


class Throttle:
    """Latency per request, a per-stream rate, and an aggregate rate shared by all requests."""

    def __init__(self, latency: float, stream_bandwidth: float | None, bandwidth: float | None) -> None:
        self.latency = latency
        self.stream_bandwidth = stream_bandwidth
        self.bandwidth = bandwidth
        self._lock = threading.Lock()
        self._free_at = 0.0

    def wait(self, size: int) -> None:
        now = time.monotonic()
        done = now + self.latency + (size / self.stream_bandwidth if self.stream_bandwidth else 0.0)
        if self.bandwidth:
            with self._lock:  # the link is a pipe: this request's bytes pass after the queued ones
                self._free_at = max(self._free_at, now) + size / self.bandwidth
                done = max(done, self._free_at)
        delay = done - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class Passthrough:
    """Serves `source` read-only on `mountpoint`, throttling file reads."""

    def __init__(self, source: Path, mountpoint: Path, throttle: Throttle, max_read: int, threads: int) -> None:
        self.source = source.resolve()
        self.mountpoint = mountpoint
        self.throttle = throttle
        self.max_read = max_read
        self.threads = threads
        self._paths: dict[int, bytes] = {1: os.fsencode(self.source)}
        self._ids: dict[bytes, int] = {self._paths[1]: 1}
        self._files: dict[int, int] = {}
        self._lock = threading.Lock()
        self._next_fh = 1
        self.stats = {"reads": 0, "read_bytes": 0, "max_read_size": 0, "opens": 0, "requests": 0}
        self.fd = -1

    # -- mount and serve ----------------------------------------------------------------------
    def mount(self) -> None:
        self.fd = os.open("/dev/fuse", os.O_RDWR)
        st = os.stat(self.source)
        options = (
            f"fd={self.fd},rootmode={stat.S_IFMT(st.st_mode) | 0o755:o},user_id=0,group_id=0,"
            f"allow_other,default_permissions,max_read={self.max_read}"
        )
        libc = _libc()
        result = libc.mount(
            b"volcache-netfs",
            os.fsencode(str(self.mountpoint)),
            FSTYPE.encode(),
            ctypes.c_ulong(_MS_NOSUID | _MS_NODEV | _MS_RDONLY),
            options.encode(),
        )
        if result != 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"mount {self.mountpoint}: {os.strerror(err)}")

    def serve(self) -> None:
        """Serve with `threads` threads until the kernel says the mount is gone."""
        workers = [threading.Thread(target=self._loop, daemon=True) for _ in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    def _loop(self) -> None:
        size = self.max_read + 64 * 1024
        while True:
            try:
                data = os.read(self.fd, size)
            except OSError as exc:
                if exc.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                    continue  # ENOENT: the request was interrupted before we read it
                return  # ENODEV: unmounted
            self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        _, opcode, unique, nodeid, *_ = _IN_HEADER.unpack_from(data)
        body = memoryview(data)[_IN_HEADER.size :]
        with self._lock:
            self.stats["requests"] += 1
        if opcode in _NO_REPLY:
            return
        try:
            payload = self._handle(opcode, nodeid, body)
        except OSError as exc:
            self._reply(unique, -(exc.errno or errno.EIO))
            return
        self._reply(unique, 0, payload)

    def _reply(self, unique: int, error: int, payload: bytes = b"") -> None:
        header = _OUT_HEADER.pack(_OUT_HEADER.size + (len(payload) if error == 0 else 0), error, unique)
        with contextlib.suppress(OSError):  # ENOENT: the request was interrupted meanwhile
            os.writev(self.fd, [header, payload] if error == 0 else [header])

    def write_stats(self, path: Path) -> None:
        """Write the counts as JSON, atomically (readers poll the file while serving)."""
        with self._lock:
            text = json.dumps(self.stats)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    # -- requests -------------------------------------------------------------------------------
    def _handle(self, opcode: int, nodeid: int, body: memoryview) -> bytes:
        if opcode == INIT:
            return self._init(body)
        if opcode == LOOKUP:
            name = bytes(body).split(b"\0", 1)[0]
            path = os.path.join(self._path(nodeid), name)
            st = os.lstat(path)
            return struct.pack("<QQQQII", self._node(path), 0, _TTL, _TTL, 0, 0) + _attr(st)
        if opcode == GETATTR:
            return struct.pack("<QII", _TTL, 0, 0) + _attr(os.lstat(self._path(nodeid)))
        if opcode == READLINK:
            return os.readlink(self._path(nodeid))
        if opcode in (OPEN, OPENDIR):
            return self._open(nodeid, opcode == OPEN)
        if opcode == READ:
            fh, offset, size, _ = _READ_IN.unpack_from(body)
            return self._read(fh, offset, size)
        if opcode in (RELEASE, RELEASEDIR):
            (fh,) = struct.unpack_from("<Q", body)
            with self._lock:
                fd = self._files.pop(fh, -1)
            if fd >= 0:
                os.close(fd)
            return b""
        if opcode == READDIR:
            (_, offset, size, _) = _READ_IN.unpack_from(body)
            return self._readdir(nodeid, offset, size)
        if opcode == STATFS:
            s = os.statvfs(self._path(nodeid))
            return struct.pack(
                "<QQQQQIIII6I", s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree,
                s.f_bsize, s.f_namemax, s.f_frsize, 0, *([0] * 6),
            )  # fmt: skip
        if opcode in (FLUSH, ACCESS, DESTROY):
            return b""
        raise OSError(errno.ENOSYS, "not supported")  # xattrs, writes, READDIRPLUS, LSEEK, STATX, ...

    def _init(self, body: memoryview) -> bytes:
        major, minor, max_readahead, flags = struct.unpack_from("<IIII", body)
        if major != 7:
            raise OSError(errno.EPROTO, f"FUSE protocol {major} is not 7")
        want = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_PARALLEL_DIROPS
        max_pages = max(1, self.max_read // 4096)
        if max_pages > 32 and flags & FUSE_MAX_PAGES:
            want |= FUSE_MAX_PAGES
        return struct.pack(
            "<IIIIHHIIHHI7I", 7, min(minor, 31), max_readahead, flags & want,
            12, 9, 128 * 1024, 1, max_pages, 0, 0, *([0] * 7),
        )  # fmt: skip

    def _path(self, nodeid: int) -> bytes:
        with self._lock:
            path = self._paths.get(nodeid)
        if path is None:
            raise OSError(errno.ESTALE, "unknown node")
        return path

    def _node(self, path: bytes) -> int:
        with self._lock:
            node = self._ids.get(path)
            if node is None:
                node = len(self._paths) + 1
                self._paths[node] = path
                self._ids[path] = node
            return node

    def _open(self, nodeid: int, is_file: bool) -> bytes:
        path = self._path(nodeid)
        fd = os.open(path, os.O_RDONLY | (0 if is_file else os.O_DIRECTORY))
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self._files[fh] = fd
            self.stats["opens"] += int(is_file)
        return struct.pack("<QIi", fh, FOPEN_KEEP_CACHE if is_file else 0, 0)

    def _read(self, fh: int, offset: int, size: int) -> bytes:
        with self._lock:
            fd = self._files.get(fh, -1)
        if fd < 0:
            raise OSError(errno.EBADF, "unknown file handle")
        self.throttle.wait(size)
        data = os.pread(fd, size, offset)
        with self._lock:
            self.stats["reads"] += 1
            self.stats["read_bytes"] += len(data)
            self.stats["max_read_size"] = max(self.stats["max_read_size"], size)
        return data

    def _readdir(self, nodeid: int, offset: int, size: int) -> bytes:
        path = self._path(nodeid)
        entries = [(b".", path), (b"..", os.path.dirname(path))]
        entries += [(name, os.path.join(path, name)) for name in sorted(os.listdir(path))]
        out = bytearray()
        for index, (name, full) in enumerate(entries[offset:], start=offset + 1):
            st = os.lstat(full)
            entry = struct.pack("<QQII", st.st_ino, index, len(name), stat.S_IFMT(st.st_mode) >> 12) + name
            entry += b"\0" * (-len(entry) % 8)
            if len(out) + len(entry) > size:
                break
            out += entry
        return bytes(out)


def _attr(st: os.stat_result) -> bytes:
    return _ATTR.pack(
        st.st_ino, st.st_size, st.st_blocks, int(st.st_atime), int(st.st_mtime), int(st.st_ctime),
        st.st_atime_ns % 10**9, st.st_mtime_ns % 10**9, st.st_ctime_ns % 10**9,
        st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_rdev, 4096, 0,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._fuse", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("--latency", type=float, default=0.001, help="seconds added to each read request")
    parser.add_argument("--stream-bandwidth", type=float, default=None, help="bytes/s of one request")
    parser.add_argument("--bandwidth", type=float, default=None, help="bytes/s of all requests together")
    parser.add_argument("--max-read", type=int, default=128 * 1024, help="largest read request, bytes")
    parser.add_argument("--threads", type=int, default=32, help="requests served at once")
    parser.add_argument("--ready", type=Path, help="a file written once the mount answers")
    parser.add_argument("--stats", type=Path, help="where to write the request counts at exit")
    args = parser.parse_args(argv)
    throttle = Throttle(args.latency, args.stream_bandwidth, args.bandwidth)
    fs = Passthrough(args.source, args.mountpoint, throttle, args.max_read, args.threads)
    fs.mount()
    server = threading.Thread(target=fs.serve, daemon=True)
    server.start()
    os.listdir(args.mountpoint)  # the INIT handshake and a first request, served by the threads
    if args.ready is not None:
        args.ready.write_text(str(os.getpid()))
    while server.is_alive():
        server.join(0.1)
        if args.stats is not None:
            fs.write_stats(args.stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
