"""`ModelStore.ensure`: a local snapshot path for a model, downloaded at most once per volume.

Resolution order (ARCHITECTURE.md, "Startup of a worker"):
1. a local folder given as the model (used in place);
2. RunPod's cached models and other read-only caches (used in place, never written);
3. volcache's own completion record on the volume (offline: zero network requests);
4. otherwise, under the volume lease: list the repo, plan the files the loader opens
   (`volcache._selection`, from the listing and the few small files that decide), preflight
   the free space, download them through `huggingface_hub` into `HF_HUB_CACHE`, verify sizes
   and sha256, write the completion record of that selection, release the lease.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from ._errors import (
    InsufficientSpace,
    IntegrityError,
    ModelNotFound,
    OfflineMiss,
    StoreError,
    SymlinksUnsupported,
    UnsafeRepoPath,
)
from ._files import RemoteFile, check_commit, check_listing, check_repo_id
from ._lease import Lease
from ._record import (
    DEFAULT_SELECTION,
    CompletionRecord,
    read_record,
    record_path,
    repo_folder,
    snapshot_mismatches,
    used_marker_path,
    write_record,
)
from ._selection import MAX_DECIDING_BYTES, Plan, Selection, deciding_files, plan_selection
from ._settings import Settings, format_bytes

log = logging.getLogger("volcache.store")

Source = Literal["local", "readonly-cache", "volume", "download"]
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
DOWNLOAD_ATTEMPTS = 3
DOWNLOAD_WORKERS = 4
_HASH_CHUNK = 8 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Resolution:
    """Where a model was found and how."""

    model: str
    revision: str
    path: Path
    source: Source
    commit: str | None = None
    bytes: int = 0
    downloaded_bytes: int = 0
    selection: Selection = DEFAULT_SELECTION


@dataclasses.dataclass(frozen=True)
class Preflight:
    """The space check before a download (I4)."""

    missing_bytes: int
    margin: int
    free_bytes: int

    @property
    def ok(self) -> bool:
        return self.missing_bytes + self.margin <= self.free_bytes


class ModelStore:
    """The one-copy model store on the volume."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()

    # -- public ----------------------------------------------------------------------------
    def ensure(self, model: str | None = None, revision: str | None = None) -> Path:
        """The snapshot folder of `model` at `revision`, downloading it once if needed."""
        return self.resolve(model, revision).path

    @property
    def selection(self) -> Selection:
        """The settings' request: MODEL_VARIANT, MODEL_FILE and VOLCACHE_INCLUDE."""
        s = self.settings
        return Selection(s.variant, s.model_file, s.include)

    def resolve(
        self,
        model: str | None = None,
        revision: str | None = None,
        on_wait: Callable[[Any, float], None] | None = None,
        selection: Selection | None = None,
    ) -> Resolution:
        model = model or self.settings.model
        revision = revision or self.settings.revision
        selection = selection or self.selection
        local = self.find_local(model, revision, selection)
        if local is not None:
            return local
        check_repo_id(model)
        if self.settings.offline:
            raise OfflineMiss(
                f"{model}@{revision} is not complete on the volume ({self.settings.hub_cache}) and "
                "HF_HUB_OFFLINE=1 forbids downloading it. Fix: run `volcache fetch "
                f"{model}` once with network access, or unset HF_HUB_OFFLINE."
            )
        return self._download(model, revision, on_wait, selection)

    def plan(self, model: str | None = None, revision: str | None = None, selection: Selection | None = None) -> Plan:
        """Every file of `model@revision`, kept or skipped, and why; downloads nothing.

        Requests: the revision, the listing and the small files that decide (no weight file).
        The kept total is what `resolve` then downloads onto an empty volume.
        """
        model = check_repo_id(model or self.settings.model)
        revision = revision or self.settings.revision
        selection = selection or self.selection
        _check_revision(revision)
        commit, listing = self._list_remote(model, revision)
        return self._plan_listing(model, commit, listing, selection)[0]

    def find_local(self, model: str, revision: str, selection: Selection | None = None) -> Resolution | None:
        """A complete local snapshot of this selection, found without any network request, or None."""
        selection = selection or self.selection
        folder = Path(model)
        if folder.is_absolute() or model.startswith("."):
            if folder.is_dir():
                return Resolution(model, revision, folder, "local")
            raise ModelNotFound(f"{model} looks like a local path but is not a folder.")
        check_repo_id(model)
        _check_revision(revision)
        for cache in self.settings.readonly_caches:
            snap = _find_readonly_snapshot(cache, model, revision)
            if snap is not None:
                return Resolution(model, revision, snap, "readonly-cache", snap.name)
        record = self.complete_record(model, revision, selection)
        if record is None:
            return None
        snapshot = self.snapshot_dir(model, record.commit)
        return Resolution(model, revision, snapshot, "volume", record.commit, record.total_bytes, 0, selection)

    def complete_record(self, model: str, revision: str, selection: Selection | None = None) -> CompletionRecord | None:
        """The newest record of `model@revision` for this selection whose files all match the disk.

        A record of another selection never serves: its files may not be the ones this
        request's loader opens (another variant, another quantization).
        """
        for record in self._candidate_records(model, revision, selection or self.selection):
            problems = snapshot_mismatches(self.snapshot_dir(model, record.commit), record)
            if not problems:
                return record
            log.warning(
                "volcache: %s@%s has a record but the snapshot differs (%s); not used",
                model,
                record.commit[:8],
                "; ".join(problems[:3]),
            )
        return None

    def snapshot_dir(self, model: str, commit: str) -> Path:
        return self.repo_dir(model) / "snapshots" / commit

    def repo_dir(self, model: str) -> Path:
        return self.settings.hub_cache / repo_folder(model)

    def lease_path(self, model: str) -> Path:
        return self.settings.records_dir / "locks" / f"{repo_folder(model)}.lease"

    def mark_used(self, resolution: Resolution) -> None:
        """Record that a worker loaded this snapshot now (for `volcache prune`'s LRU order)."""
        if resolution.source not in ("volume", "download") or resolution.commit is None:
            return
        marker = used_marker_path(self.settings.records_dir, resolution.model, resolution.commit)
        with contextlib.suppress(OSError):
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()

    # -- local lookups ---------------------------------------------------------------------
    def _candidate_records(self, model: str, revision: str, selection: Selection) -> Iterator[CompletionRecord]:
        commit = revision if _SHA_RE.match(revision) else read_ref(self.repo_dir(model), revision)
        if commit is not None:
            record = read_record(record_path(self.settings.records_dir, model, commit, selection))
            if record is not None and record.selection == selection:
                yield record
        # refs/<revision> may have moved on (an interrupted newer download); an older
        # complete snapshot of the same revision name still serves, offline.
        folder = self.settings.records_dir / "records" / repo_folder(model)
        others = [read_record(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
        for record in sorted((r for r in others if r is not None), key=lambda r: -r.completed_at):
            if record.revision == revision and record.commit != commit and record.selection == selection:
                yield record

    # -- download --------------------------------------------------------------------------
    def _download(
        self, model: str, revision: str, on_wait: Callable[[Any, float], None] | None, selection: Selection
    ) -> Resolution:
        s = self.settings
        created = _make_dirs(s.hub_cache, s.records_dir / "locks")
        lease = Lease(
            self.lease_path(model),
            timeout=s.lease_timeout,
            max_wait=s.lease_max_wait,
            purpose=f"download {model}@{revision}",
            on_wait=on_wait,
        )
        try:
            with lease:
                local = self.find_local(model, revision, selection)  # another worker finished meanwhile
                if local is not None:
                    return local
                return self._download_locked(model, revision, lease, selection)
        except BaseException:
            _remove_empty_dirs(created)
            raise

    def _download_locked(self, model: str, revision: str, lease: Lease, selection: Selection) -> Resolution:
        s = self.settings
        commit, listing = self._list_remote(model, revision)
        plan, small = self._plan_listing(model, commit, listing, selection)  # never empty of weights: it raises
        needed = [f for f in listing if f.path in plan.kept_paths]
        repo = self.repo_dir(model)
        record = read_record(record_path(s.records_dir, model, commit, selection))
        if record is None or snapshot_mismatches(self.snapshot_dir(model, commit), record):
            probe_symlinks(s.hub_cache)
            _remove_incomplete(repo)
            preflight = self.preflight(model, needed)
            if not preflight.ok:
                raise _space_error(model, commit, preflight, s)
            downloaded = self._keep_deciding_files(model, needed, small)
            downloaded += self._fetch_files(model, commit, needed, lease)
            if lease.lost.is_set():
                raise StoreError(f"lost the download lease of {model} to another worker; retry.")
            record = CompletionRecord.new(model, commit, revision, needed, selection)
            with _volume_full_is_clear(f"writing the completion record of {model}", s):
                write_record(record_path(s.records_dir, model, commit, selection), record)
        else:
            downloaded = 0
        if not _SHA_RE.match(revision):
            with _volume_full_is_clear(f"writing refs/{revision} of {model}", s):
                _write_ref(repo, revision, commit)
        log.info(
            "volcache: %s@%s complete on the volume (%s, %d files, selection %s)",
            model,
            commit[:8],
            format_bytes(record.total_bytes),
            len(record.files),
            selection.label,
        )
        return Resolution(
            model,
            revision,
            self.snapshot_dir(model, commit),
            "download",
            commit,
            record.total_bytes,
            downloaded,
            selection,
        )

    def _plan_listing(
        self, model: str, commit: str, listing: list[RemoteFile], selection: Selection
    ) -> tuple[Plan, dict[RemoteFile, bytes]]:
        """Read the deciding small files (in memory: a plan writes nothing) until the plan is decided."""
        by_path = {f.path: f for f in listing}
        contents: dict[str, bytes] = {}
        while wanted := deciding_files(listing, contents, selection):
            for path in wanted:
                contents[path] = self._read_small(model, commit, by_path[path])
        plan = plan_selection(listing, contents, selection, model=model, commit=commit)
        return plan, {by_path[p]: data for p, data in contents.items()}

    def _keep_deciding_files(self, model: str, needed: Sequence[RemoteFile], small: dict[RemoteFile, bytes]) -> int:
        """Put the deciding files already read (and checked) into `blobs/<oid>`, so each file of the
        download is served once: the Hub client then only links them. Call after the preflight."""
        blobs = self.repo_dir(model) / "blobs"
        written = 0
        for f in needed:
            data = small.get(f)
            if data is None or _blob_complete(blobs / f.oid, f.size):
                continue
            blobs.mkdir(parents=True, exist_ok=True)
            partial = blobs / f"{f.oid}.{os.getpid()}.incomplete"  # removed with the others if we die here
            with _volume_full_is_clear(f"writing {f.path} of {model}", self.settings):
                try:
                    partial.write_bytes(data)
                    os.replace(partial, blobs / f.oid)
                except BaseException:
                    partial.unlink(missing_ok=True)
                    raise
            written += f.size
        return written

    def _read_small(self, model: str, commit: str, f: RemoteFile) -> bytes:
        """One small file's bytes, checked against the listing (size and blob id) before it decides anything."""
        from huggingface_hub import get_session, hf_hub_url, hf_raise_for_status
        from huggingface_hub.utils._headers import build_hf_headers

        s = self.settings
        if f.size > MAX_DECIDING_BYTES:
            raise UnsafeRepoPath(f"{model}: {f.path} is listed with {f.size} bytes, too large for an index or config.")
        url = hf_hub_url(model, f.path, revision=commit, endpoint=s.endpoint)

        def get() -> bytes:
            headers = build_hf_headers(token=s.hf_token)
            with get_session().stream("GET", url, headers=headers, follow_redirects=True) as r:
                hf_raise_for_status(r)
                data = b""
                for chunk in r.iter_bytes():
                    data += chunk
                    if len(data) > f.size:
                        break
            h = hashlib.sha256() if f.sha256 else git_blob_header(len(data))
            h.update(data)
            if len(data) != f.size or h.hexdigest() != f.oid:  # a cut or corrupted answer: retried
                raise ValueError(f"the Hub sent other bytes for {f.path} than its listing names")
            return data

        data: bytes = self._call_hub(get, model, commit)
        return data

    def _list_remote(self, model: str, revision: str) -> tuple[str, list[RemoteFile]]:
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile

        api = HfApi(endpoint=self.settings.endpoint, token=self.settings.hf_token)
        info = self._call_hub(lambda: api.model_info(model, revision=revision), model, revision)
        commit = check_commit(str(info.sha))
        entries = self._call_hub(
            lambda: list(api.list_repo_tree(model, revision=commit, recursive=True)), model, revision
        )
        files = [_remote_file(e) for e in entries if isinstance(e, RepoFile)]
        return commit, check_listing(files)

    def preflight(self, model: str, needed: Sequence[RemoteFile]) -> Preflight:
        """Bytes still missing on the volume for `needed`, the margin, and the free space."""
        blobs = self.repo_dir(model) / "blobs"
        missing = sum(f.size for f in needed if not _blob_complete(blobs / f.oid, f.size))
        st = os.statvfs(self.settings.hub_cache)
        return Preflight(missing, self.settings.free_margin, st.f_bavail * st.f_frsize)

    def _fetch_files(self, model: str, commit: str, needed: Sequence[RemoteFile], lease: Lease) -> int:
        blobs = self.repo_dir(model) / "blobs"
        todo = [f for f in needed if not _blob_complete(blobs / f.oid, f.size)]
        present = [f for f in needed if f not in todo]
        total = sum(f.size for f in todo)
        log.info(
            "volcache: downloading %s@%s: %d of %d files, %s",
            model,
            commit[:8],
            len(todo),
            len(needed),
            format_bytes(total),
        )
        done = 0
        with concurrent.futures.ThreadPoolExecutor(DOWNLOAD_WORKERS) as pool:
            futures = {pool.submit(self._fetch_one, model, commit, f): f for f in todo}
            futures.update({pool.submit(self._link_present, model, commit, f): f for f in present})
            try:
                for fut in concurrent.futures.as_completed(futures):
                    fut.result()
                    f = futures[fut]
                    if f in todo:
                        done += f.size
                        log.info(
                            "volcache: downloaded %s (%s; %s of %s)",
                            f.path,
                            format_bytes(f.size),
                            format_bytes(done),
                            format_bytes(total),
                        )
            except BaseException:
                for other in futures:
                    other.cancel()
                pool.shutdown(wait=True)
                _remove_incomplete(self.repo_dir(model))
                raise
        return done

    def _link_present(self, model: str, commit: str, f: RemoteFile) -> None:
        """A blob already on the volume needs its snapshot link and a check before it is recorded.

        It may be shared with another revision, or left by a worker killed after the Hub client
        renamed it into blobs/ and before its sha256 was checked: only its size is known good.
        """
        link = self.snapshot_dir(model, commit) / f.path
        if link.exists():
            try:
                self._verify_file(model, commit, f, link)
                return
            except IntegrityError as exc:
                log.warning("volcache: %s Downloading it again.", exc)
        self._fetch_one(model, commit, f)

    def fetch_file(self, model: str, commit: str, f: RemoteFile) -> None:
        """Download one file of `model@commit` into the cache and verify it. Hold the model's lease."""
        self._fetch_one(model, commit, f)

    def _fetch_one(self, model: str, commit: str, f: RemoteFile) -> None:
        from huggingface_hub import hf_hub_download

        s = self.settings
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                self._check_answer(model, commit, f)
                path = hf_hub_download(
                    model,
                    f.path,
                    revision=commit,
                    cache_dir=s.hub_cache,
                    endpoint=s.endpoint,
                    token=s.hf_token,
                )
                self._verify_file(model, commit, f, Path(path))
                return
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise _filled_up(f"downloading {model} ({f.path})", s) from None
                error: Exception = exc
            except IntegrityError as exc:
                error = exc
            except Exception as exc:
                error = _hub_error(exc, model, commit, s)
                if isinstance(error, ModelNotFound | UnsafeRepoPath):
                    raise error from None
            if attempt == DOWNLOAD_ATTEMPTS:
                if isinstance(error, IntegrityError):
                    raise error
                raise StoreError(
                    f"could not download {f.path} of {model} from {s.endpoint or 'the Hub'} after "
                    f"{attempt} attempts: {_one_line(s.redact(str(error)))}. Fix: check the network and retry; "
                    "files already downloaded are kept."
                ) from None
            log.warning(
                "volcache: %s of %s failed (attempt %d/%d): %s; retrying",
                f.path,
                model,
                attempt,
                DOWNLOAD_ATTEMPTS,
                _one_line(s.redact(str(error)))[:300],
            )
            time.sleep(min(8.0, 0.5 * 2**attempt))

    def _check_answer(self, model: str, commit: str, f: RemoteFile) -> None:
        """Refuse a Hub answer that would make the client write anywhere but `blobs/<oid>` of this commit.

        huggingface_hub names the blob file after the ETag header and the snapshot folder after
        X-Repo-Commit, unchecked: a broken or hostile mirror could point them outside the cache.
        One HEAD before the download checks them (and the size) against the tree listing.
        """
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        s = self.settings
        url = hf_hub_url(model, f.path, revision=commit, endpoint=s.endpoint)
        meta = get_hf_file_metadata(url, token=s.hf_token, endpoint=s.endpoint, retry_on_errors=True)
        answers = (("ETag", meta.etag, f.oid), ("X-Repo-Commit", meta.commit_hash, commit), ("size", meta.size, f.size))
        wrong = [f"{name} {got!r} instead of {want!r}" for name, got, want in answers if got != want]
        if wrong:
            raise UnsafeRepoPath(
                f"the Hub's answer for {f.path} of {model}@{commit[:8]} contradicts its listing "
                f"({s.redact('; '.join(wrong))}); refusing to download it."
            )

    def _verify_file(self, model: str, commit: str, f: RemoteFile, path: Path) -> None:
        """Size of every file, sha256 of LFS files, git blob id of the others; it must be `blobs/<oid>`."""
        repo = self.repo_dir(model).resolve()
        target = path.resolve()
        pointer, blob = self.snapshot_dir(model, commit) / f.path, repo / "blobs" / f.oid
        if path != pointer or target != blob:
            if path == pointer and path.is_symlink():  # our own link, pointing elsewhere: never leave it
                path.unlink()
            where = "outside" if repo not in target.parents else "not the listed blob in"
            raise UnsafeRepoPath(f"{f.path} of {model} resolved to {target}, {where} {repo}; refusing.")
        size = target.stat().st_size
        problem = None
        if size != f.size:
            problem = f"{size} bytes on disk, the Hub listed {f.size}"
        elif f.sha256 is not None:
            digest = sha256_file(target)
            if digest != f.sha256:
                problem = f"sha256 {digest[:12]}… does not match the Hub's {f.sha256[:12]}…"
        elif len(f.oid) == 40:  # a file outside LFS: the Hub lists its git blob id
            digest = git_blob_sha1(target, size)
            if digest != f.oid:
                problem = f"git blob id {digest[:12]}… does not match the Hub's {f.oid[:12]}…"
        if problem is None:
            return
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise IntegrityError(f"{f.path} of {model}@{commit[:8]}: {problem}; the file was removed.")

    def _call_hub(self, call: Callable[[], Any], model: str, revision: str) -> Any:
        s = self.settings
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                return call()
            except Exception as exc:
                error = _hub_error(exc, model, revision, s)
                if isinstance(error, StoreError):
                    raise error from None
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise StoreError(
                        f"the Hub at {s.endpoint or 'huggingface.co'} did not answer for {model}@{revision} after "
                        f"{attempt} attempts: {_one_line(s.redact(str(exc)))}. Fix: check the network "
                        "(and HF_ENDPOINT), then retry."
                    ) from None
                log.warning(
                    "volcache: the Hub did not answer for %s (attempt %d/%d): %s; retrying",
                    model,
                    attempt,
                    DOWNLOAD_ATTEMPTS,
                    _one_line(s.redact(str(exc)))[:300],
                )
                time.sleep(min(8.0, 0.5 * 2**attempt))
        raise AssertionError("unreachable")


# -- helpers -------------------------------------------------------------------------------
def hash_file(path: Path, h: Any, on_chunk: Callable[[int], None] | None = None) -> str:
    """Feed `path` to the hash object `h` in large chunks; `on_chunk(n)` reports progress."""
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
    return str(h.hexdigest())


def sha256_file(path: Path) -> str:
    return hash_file(path, hashlib.sha256())


def git_blob_header(size: int) -> Any:
    """A sha1 primed with git's blob header: fed the content, it gives the id the Hub's tree lists."""
    return hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)


def git_blob_sha1(path: Path, size: int) -> str:
    """The id git (and the Hub's tree listing) gives a file's content: sha1 of `blob <size>\\0<bytes>`."""
    return hash_file(path, git_blob_header(size))


def probe_symlinks(folder: Path) -> None:
    """Refuse a cache folder without symlinks: huggingface_hub would then keep a second copy."""
    probe = folder / f".volcache-symlink-probe-{os.getpid()}"
    try:
        with contextlib.suppress(FileNotFoundError):
            probe.unlink()
        os.symlink("blobs/target", probe)
    except OSError as exc:
        raise SymlinksUnsupported(
            f"the cache folder {folder} cannot hold symlinks ({exc.strerror}). Without them "
            "huggingface_hub stores a second copy of every file, breaking the one-copy contract. "
            "Fix: use a volume whose filesystem supports symlinks (RunPod network volumes do), or "
            "point VOLCACHE_VOLUME at one."
        ) from None
    probe.unlink()


def _remote_file(entry: Any) -> RemoteFile:
    """One file of the Hub's tree listing; a size or path of the wrong type is refused, not coerced."""
    path, size = entry.path, entry.size
    if not isinstance(path, str) or isinstance(size, bool) or not isinstance(size, int):
        raise UnsafeRepoPath(f"the Hub listed {path!r} with a size of {size!r}, not a whole number of bytes.")
    sha256 = entry.lfs.sha256 if entry.lfs else None
    return RemoteFile(path, size, sha256, str(sha256) if entry.lfs else str(entry.blob_id))


def _hub_error(exc: Exception, model: str, revision: str, s: Settings) -> Exception:
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return ModelNotFound(f"{model} is gated: accept its terms on the Hub and set HF_TOKEN.")
    if isinstance(exc, errors.RevisionNotFoundError):
        return ModelNotFound(f"{model} has no revision {revision!r}; check MODEL_REVISION.")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return ModelNotFound(
            f"{model} was not found on {s.endpoint or 'the Hub'}; check MODEL_NAME (and HF_TOKEN for a private model)."
        )
    if isinstance(exc, errors.EntryNotFoundError):
        return StoreError(f"{model}@{revision}: a listed file is missing on the Hub: {_one_line(s.redact(str(exc)))}")
    return exc


def _one_line(text: str) -> str:
    """The Hub client's messages span lines (URL, a docs link, the server's text): the CLI prints one."""
    return " ".join(text.split())


def _space_error(model: str, commit: str, p: Preflight, s: Settings) -> InsufficientSpace:
    return InsufficientSpace(
        f"not enough space on the volume for {model}@{commit[:8]}: it needs {format_bytes(p.missing_bytes)} "
        f"({p.missing_bytes} bytes) plus a margin of {format_bytes(p.margin)}, but {s.hub_cache} has "
        f"{format_bytes(p.free_bytes)} ({p.free_bytes} bytes) free. Nothing was written. Fix: free space "
        "(`volcache prune --keep-bytes ...`), use a larger network volume, or lower VOLCACHE_FREE_MARGIN."
    )


def _filled_up(doing: str, s: Settings) -> InsufficientSpace:
    return InsufficientSpace(
        f"the volume filled up while {doing}: {s.hub_cache} has {format_bytes(_free_bytes(s.hub_cache))} free. "
        "Partial files were removed. Fix: free space with `volcache prune`, or grow the volume."
    )


@contextlib.contextmanager
def _volume_full_is_clear(doing: str, s: Settings) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT into the store's InsufficientSpace; the caller removed its partial file."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise _filled_up(doing, s) from None


def _free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def _blob_complete(blob: Path, size: int) -> bool:
    try:
        return blob.stat().st_size == size
    except OSError:
        return False


def _remove_incomplete(repo: Path) -> None:
    """Remove `.incomplete` downloads left by dead workers. Call only while holding the lease."""
    blobs = repo / "blobs"
    if not blobs.is_dir():
        return
    for partial in blobs.glob("*.incomplete"):
        with contextlib.suppress(FileNotFoundError):
            log.info(
                "volcache: removing partial download %s (%s)",
                partial.name,
                format_bytes(partial.stat().st_size),
            )
            partial.unlink()


def _check_revision(revision: str) -> None:
    if not _REVISION_RE.match(revision) or ".." in revision.split("/"):
        raise UnsafeRepoPath(f"{revision!r} is not a valid revision (a branch, tag or commit id).")


def read_ref(repo: Path, revision: str) -> str | None:
    try:
        sha = (repo / "refs" / revision).read_text().strip()
    except OSError:
        return None
    return sha if _SHA_RE.match(sha) else None


def _write_ref(repo: Path, revision: str, commit: str) -> None:
    ref = repo / "refs" / revision
    if read_ref(repo, revision) == commit:
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(commit)
        os.replace(tmp, ref)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _find_readonly_snapshot(cache: Path, model: str, revision: str) -> Path | None:
    """A snapshot in a read-only cache; RunPod lower-cases repo folder names, so match either way."""
    if not cache.is_dir():
        return None
    wanted = repo_folder(model).lower()
    try:
        folders = [p for p in cache.iterdir() if p.name.lower() == wanted]
    except OSError:
        return None
    for folder in folders:
        commit = revision if _SHA_RE.match(revision) else read_ref(folder, revision)
        if commit is None:
            snaps = sorted((folder / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
            if revision != "main" or len(snaps) != 1:
                continue
            commit = snaps[0].name
        snap = folder / "snapshots" / commit
        if snap.is_dir() and any(snap.iterdir()) and not any((folder / "blobs").glob("*.incomplete")):
            return snap
    return None


def _make_dirs(*dirs: Path) -> list[Path]:
    """mkdir -p each folder; return the folders that did not exist before, outermost first."""
    created: list[Path] = []
    for d in dirs:
        missing = [p for p in (d, *d.parents) if not p.exists()]
        created.extend(reversed(missing))
        d.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty_dirs(created: list[Path]) -> None:
    for d in reversed(created):
        with contextlib.suppress(OSError):
            d.rmdir()
