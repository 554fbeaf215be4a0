"""`ModelStore.resolve`: a local snapshot path for a model, downloaded at most once per volume.

Resolution order (ARCHITECTURE.md, "Startup of a worker"):
1. a local folder given as the model (used in place);
2. RunPod's cached models and other read-only caches (used in place, never written);
3. volcache's own completion record on the volume (offline: zero network requests);
4. otherwise, under the volume lease: list the repo, plan the files the loader opens
   (`selection`, decided from the listing and the few small files that decide, read in memory),
   preflight the free space, download them through `huggingface_hub` into a staging folder in the repo's blobs/,
   verify each, rename it to `blobs/<oid>`, link it into the snapshot, write the completion
   record, release the lease.

`hold()` is `resolve()` plus the in-use marker that keeps `volcache prune` away while loaded.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from .._errors import InsufficientSpace, InvalidModelId, ModelNotFound, OfflineMiss
from .._settings import StoreSettings, format_bytes
from .hub import HubClient, remove_stale_staging, staging_folder
from .integrity import check_file
from .inuse import InUse, hold_in_use
from .layout import SHA1_RE, RepoFolder, VolumeLayout
from .lease import Lease, model_lease
from .record import DEFAULT_SELECTION, CompletionRecord, read_record, snapshot_mismatches, write_record
from .scan import find_readonly_snapshot, records_of
from .selection import Plan, RemoteFile, Selection, check_repo_id, deciding_files, plan_selection
from .volume import free_bytes, probe_symlinks, replace_into

log = logging.getLogger("volcache.store")

Source = Literal["local", "readonly-cache", "volume", "download"]
_REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
DOWNLOAD_WORKERS = 4


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
    selection: Selection = DEFAULT_SELECTION  # which weights of the repo (MODEL_VARIANT, MODEL_FILE, includes)


@dataclasses.dataclass
class Held:
    """A resolution whose snapshot is marked in use until `release()` (or the process ends)."""

    resolution: Resolution
    in_use: InUse | None

    def release(self) -> None:
        if self.in_use is not None:
            self.in_use.release()


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
    """The one-copy model store on the volume. It reads no environment: pass its settings."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.layout = VolumeLayout.of(settings)
        self.hub = HubClient(settings)

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
                f"{model}` once with network access, or unset HF_HUB_OFFLINE.",
                model=model,
                revision=revision,
            )
        # The cheap question first (does it exist, may this token read it): a missing or gated model
        # fails here, before a folder, a lease or a byte is written.
        commit = self.hub.commit_of(model, revision)
        return self._download(model, revision, commit, on_wait, selection)

    def plan(self, model: str | None = None, revision: str | None = None, selection: Selection | None = None) -> Plan:
        """Every file of `model@revision`, kept or skipped, and why; downloads and writes nothing.

        Requests: the revision, the listing and the small files that decide (no weight file).
        The kept total is what `resolve` then downloads onto an empty volume.
        """
        model = check_repo_id(model or self.settings.model)
        revision = revision or self.settings.revision
        selection = selection or self.selection
        _check_revision(revision)
        listing = self.hub.list(model, revision)
        return self._plan_listing(model, listing.commit, listing.files, selection)[0]

    def hold(self, resolution: Resolution) -> Held:
        """Mark `resolution`'s snapshot in use and used now; re-resolve if a prune removed it meanwhile.

        Call it right after `resolve()`, before loading the weights, and keep the handle while the
        model is loaded. A prune that planned before the marker appeared checks again under the
        model's lease; the re-check here closes the window of a prune that finished in between.
        """
        marker = None
        if resolution.source in ("volume", "download") and resolution.commit:
            marker = hold_in_use(self.settings, resolution.model, resolution.commit)
            if self.find_local(resolution.model, resolution.revision, resolution.selection) is None:
                resolution = self.resolve(resolution.model, resolution.revision, selection=resolution.selection)
        self.mark_used(resolution)
        return Held(resolution, marker)

    def check_remote(self, model: str | None = None, revision: str | None = None) -> str:
        """Ask the Hub the cheap question first: does `model@revision` exist and may this token read it.

        Returns the commit; raises `ModelNotFound` (a restart cannot fix it) or `HubUnavailable` (it may heal).
        """
        model = check_repo_id(model or self.settings.model)
        return self.hub.commit_of(model, revision or self.settings.revision)

    def find_local(self, model: str, revision: str, selection: Selection | None = None) -> Resolution | None:
        """A complete local snapshot of this selection, found without any network request, or None."""
        selection = selection or self.selection
        folder = Path(model)
        if folder.is_absolute() or model.startswith("."):
            if folder.is_dir():
                return Resolution(model, revision, folder, "local")
            raise ModelNotFound(f"{model} looks like a local path but is not a folder.", model=model, path=folder)
        check_repo_id(model)
        _check_revision(revision)
        for cache in self.settings.readonly_caches:
            snap = find_readonly_snapshot(cache, model, revision)
            if snap is not None:
                return Resolution(model, revision, snap, "readonly-cache", snap.name)
        record = self.complete_record(model, revision, selection)
        if record is None:
            return None
        snapshot = self.snapshot_dir(model, record.commit)
        return Resolution(model, revision, snapshot, "volume", record.commit, record.total_bytes, 0, selection)

    def complete_record(self, model: str, revision: str, selection: Selection | None = None) -> CompletionRecord | None:
        """The newest record of `model@revision` for this selection whose files all match the disk.

        A record of another selection never serves: its files may not be the ones this request's
        loader opens (another variant, another quantization).
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
        return self.layout.snapshot(model, commit)

    def repo_dir(self, model: str) -> Path:
        return self.layout.repo(model).path

    def lease_path(self, model: str) -> Path:
        return self.layout.lease(model)

    def lease(self, model: str, purpose: str, *, max_wait: float | None = None, on_wait: Any = None) -> Lease:
        """The download lease of `model` (`lease.model_lease`)."""
        return model_lease(self.settings, model, purpose, max_wait=max_wait, on_wait=on_wait)

    def mark_used(self, resolution: Resolution) -> None:
        """Record that a worker loaded this snapshot now (for `volcache prune`'s LRU order)."""
        if resolution.source not in ("volume", "download") or resolution.commit is None:
            return
        marker = self.layout.used_marker(resolution.model, resolution.commit)
        with contextlib.suppress(OSError):
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()

    def preflight(self, model: str, needed: Sequence[RemoteFile]) -> Preflight:
        """Bytes still missing on the volume for `needed`, the margin, and the free space."""
        repo = self.layout.repo(model)
        missing = sum(f.size for f in needed if not _blob_complete(repo.blob(f.oid), f.size))
        return Preflight(missing, self.settings.free_margin, free_bytes(self.settings.hub_cache))

    def fetch_file(self, model: str, commit: str, f: RemoteFile, lease: Lease | None = None) -> None:
        """Make one file of `model@commit` present, verified and linked; download it only if needed.

        A blob already on the volume may be shared with another revision, or left by a worker
        killed after the rename into blobs/ and before its link: it is checked, then linked.
        Hold the model's lease.
        """
        repo = self.layout.repo(model)
        if lease is not None:
            lease.check()
        blob = repo.blob(f.oid)
        problem = check_file(blob, f)
        if problem is None:
            _link(repo, commit, f)
            return
        if problem != "missing":
            log.warning("volcache: %s of %s: %s; downloading it again.", f.path, model, problem)
            with contextlib.suppress(FileNotFoundError):
                blob.unlink()
        try:
            self.hub.fetch(repo, model, commit, f)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _filled_up(f"downloading {model} ({f.path})", self.settings) from None
            raise
        _link(repo, commit, f)

    # -- local lookups ---------------------------------------------------------------------
    def _candidate_records(self, model: str, revision: str, selection: Selection) -> Iterator[CompletionRecord]:
        repo = self.layout.repo(model)
        commit = revision if SHA1_RE.match(revision) else repo.read_ref(revision)
        if commit is not None:
            record = read_record(self.layout.record(model, commit, selection.key))
            if record is not None and record.selection == selection:
                yield record
        # refs/<revision> may have moved on (an interrupted newer download); an older
        # complete snapshot of the same revision name still serves, offline.
        for record in records_of(self.settings, model):
            if record.revision == revision and record.commit != commit and record.selection == selection:
                yield record

    # -- download --------------------------------------------------------------------------
    def _download(
        self,
        model: str,
        revision: str,
        commit: str,
        on_wait: Callable[[Any, float], None] | None,
        selection: Selection,
    ) -> Resolution:
        created = _make_dirs(self.settings.hub_cache, self.layout.locks_dir)
        try:
            with self.lease(model, f"download {model}@{revision}", on_wait=on_wait) as lease:
                local = self.find_local(model, revision, selection)  # another worker finished meanwhile
                if local is not None:
                    return local
                return self._download_locked(model, revision, commit, lease, selection)
        except BaseException:
            _remove_empty_dirs(created)
            raise

    def _download_locked(
        self, model: str, revision: str, commit: str, lease: Lease, selection: Selection
    ) -> Resolution:
        s = self.settings
        listing = self.hub.list(model, revision, commit)
        commit = listing.commit
        # Never empty of weights: a selection without a weight file the loader can open raises.
        plan, small = self._plan_listing(model, commit, listing.files, selection)
        needed = [f for f in listing.files if f.path in plan.kept_paths]
        repo = self.layout.repo(model)
        record = read_record(self.layout.record(model, commit, selection.key))
        if record is None or snapshot_mismatches(repo.snapshot(commit), record):
            probe_symlinks(s.hub_cache)
            remove_stale_staging(repo)
            preflight = self.preflight(model, needed)
            if not preflight.ok:
                raise _space_error(model, commit, preflight, s)
            downloaded = self._keep_deciding_files(model, needed, small)
            downloaded += self._fetch_files(model, commit, needed, lease)
            lease.check()
            record = CompletionRecord.new(model, commit, revision, needed, selection)
            with _volume_full_is_clear(f"writing the completion record of {model}", s):
                write_record(self.layout.record(model, commit, selection.key), record)
        else:
            downloaded = 0
        if not SHA1_RE.match(revision):
            with _volume_full_is_clear(f"writing refs/{revision} of {model}", s):
                repo.write_ref(revision, commit)
        log.info(
            "volcache: %s@%s complete on the volume (%s, %d files, selection %s)",
            model,
            commit[:8],
            format_bytes(record.total_bytes),
            len(record.files),
            selection.label,
        )
        snapshot = repo.snapshot(commit)
        return Resolution(model, revision, snapshot, "download", commit, record.total_bytes, downloaded, selection)

    def _plan_listing(
        self, model: str, commit: str, listing: Sequence[RemoteFile], selection: Selection
    ) -> tuple[Plan, dict[RemoteFile, bytes]]:
        """Read the deciding small files (in memory: a plan writes nothing) until the plan is decided."""
        by_path = {f.path: f for f in listing}
        contents: dict[str, bytes] = {}
        while wanted := deciding_files(listing, contents, selection):
            for path in wanted:
                contents[path] = self.hub.read_small(model, commit, by_path[path])
        plan = plan_selection(listing, contents, selection, model=model, commit=commit)
        return plan, {by_path[p]: data for p, data in contents.items()}

    def _keep_deciding_files(self, model: str, needed: Sequence[RemoteFile], small: dict[RemoteFile, bytes]) -> int:
        """The deciding files already read (and checked) become their blobs, so each file of a
        download is served once: `fetch_file` then only links them. Call after the preflight."""
        repo = self.layout.repo(model)
        written = 0
        for f in needed:
            data = small.get(f)
            if data is None or _blob_complete(repo.blob(f.oid), f.size):
                continue
            with _volume_full_is_clear(f"writing {f.path} of {model}", self.settings), staging_folder(repo) as staging:
                staged = staging / f.oid
                staged.write_bytes(data)
                os.replace(staged, repo.blob(f.oid))
            written += f.size
        return written

    def _fetch_files(self, model: str, commit: str, needed: Sequence[RemoteFile], lease: Lease) -> int:
        repo = self.layout.repo(model)
        todo = [f for f in needed if not _blob_complete(repo.blob(f.oid), f.size)]
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
            futures = {pool.submit(self.fetch_file, model, commit, f, lease): f for f in (*todo, *present)}
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
                if not lease.lost.is_set():  # a new holder's partial files are not ours to remove
                    remove_stale_staging(repo)
                raise
        return done


# -- helpers -------------------------------------------------------------------------------
def _link(repo: RepoFolder, commit: str, f: RemoteFile) -> None:
    """Point `snapshots/<commit>/<path>` at `../../blobs/<oid>`, atomically (volcache makes every link)."""
    link, target = repo.blob_link(commit, f.path, f.oid)
    if link.is_symlink() and os.readlink(link) == target:
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    replace_into(link, lambda tmp: os.symlink(target, tmp))


def _space_error(model: str, commit: str, p: Preflight, s: StoreSettings) -> InsufficientSpace:
    return InsufficientSpace(
        f"not enough space on the volume for {model}@{commit[:8]}: it needs {format_bytes(p.missing_bytes)} "
        f"({p.missing_bytes} bytes) plus a margin of {format_bytes(p.margin)}, but {s.hub_cache} has "
        f"{format_bytes(p.free_bytes)} ({p.free_bytes} bytes) free. Nothing was written. Fix: free space "
        "(`volcache prune --keep-bytes ...`), use a larger network volume, or lower VOLCACHE_FREE_MARGIN.",
        model=model,
        revision=commit,
        path=s.hub_cache,
    )


def _filled_up(doing: str, s: StoreSettings) -> InsufficientSpace:
    """The volume filled up after the preflight found room: another writer took it, and may give it back.

    Unlike the preflight's refusal, this may heal, so a worker exits (and is restarted) on it.
    """
    return InsufficientSpace(
        f"the volume filled up while {doing}: {s.hub_cache} has {format_bytes(free_bytes(s.hub_cache))} free. "
        "Partial files were removed. Fix: free space with `volcache prune`, or grow the volume.",
        path=s.hub_cache,
        retryable=True,
    )


@contextlib.contextmanager
def _volume_full_is_clear(doing: str, s: StoreSettings) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT into the store's InsufficientSpace; the caller removed its partial file."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise _filled_up(doing, s) from None


def _blob_complete(blob: Path, size: int) -> bool:
    try:
        return blob.stat().st_size == size
    except OSError:
        return False


def _check_revision(revision: str) -> None:
    if not _REVISION_RE.match(revision) or ".." in revision.split("/"):
        raise InvalidModelId(f"{revision!r} is not a valid revision (a branch, tag or commit id).", revision=revision)


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
