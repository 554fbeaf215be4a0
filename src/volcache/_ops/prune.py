"""`volcache prune` and `volcache rm`: evict whole snapshots from the volume's cache, safely.

Work is planned, then executed (as `huggingface_hub`'s `DeleteCacheStrategy`), so `--dry-run`
is free. A plan never holds a snapshot of a model whose download lease is live, a snapshot
with a live in-use marker (`volcache._inuse`), a snapshot being downloaded, or anything in a
read-only cache; `.incomplete` files are never removed. Execution takes each model's download
lease (skipping a busy model), checks again, and removes refs, then snapshot links, then
records, then blobs no remaining snapshot points at, so no ref ever names a missing snapshot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .._errors import ConfigError, LeaseTimeout, ModelNotFound, StoreError
from .._files import check_repo_id
from .._inuse import inuse_dir, live_users, read_marker
from .._inventory import model_id_from_folder, read_refs
from .._lease import Lease
from .._record import (
    commit_record_paths,
    read_record,
    record_path,
    repo_folder,
    selection_record_paths,
    used_marker_path,
)
from .._settings import Settings
from .._store import ModelStore
from ._walk import is_within, real

log = logging.getLogger("volcache.prune")

LEASE_WAIT = 2.0  # seconds prune waits for a model's lease before leaving that model alone


@dataclasses.dataclass(frozen=True)
class CachedSnapshot:
    """One snapshot folder in the volume's cache, with the blobs its links point at."""

    model: str
    commit: str
    repo: Path
    path: Path
    refs: tuple[str, ...]
    blobs: frozenset[Path]
    own_bytes: int  # regular files inside the snapshot folder (a no-symlink fallback copy)
    last_used: float
    has_record: bool


@dataclasses.dataclass(frozen=True)
class Eviction:
    """A snapshot the plan removes and the bytes that frees (blobs no other snapshot keeps)."""

    snapshot: CachedSnapshot
    freed_bytes: int


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    """What the plan removes from one model's repo folder, in execution order."""

    model: str
    repo: Path
    evictions: tuple[Eviction, ...]
    refs: tuple[Path, ...]
    snapshots: tuple[Path, ...]  # snapshot folders and their `.no_exist/<commit>` folders
    records: tuple[Path, ...]  # completion records, last-use markers, in-use marker folders
    blobs: tuple[Path, ...]  # blobs not referenced by any remaining snapshot

    @property
    def freed_bytes(self) -> int:
        return sum(e.freed_bytes for e in self.evictions)


@dataclasses.dataclass(frozen=True)
class Kept:
    """A snapshot left alone, and why."""

    model: str
    commit: str
    reason: str


@dataclasses.dataclass(frozen=True)
class PrunePlan:
    """Everything a prune or rm would remove, and what it keeps on purpose."""

    models: tuple[ModelPlan, ...]
    kept: tuple[Kept, ...]
    cache_bytes: int

    @property
    def expected_freed(self) -> int:
        return sum(m.freed_bytes for m in self.models)

    @property
    def evictions(self) -> tuple[Eviction, ...]:
        return tuple(e for m in self.models for e in m.evictions)

    @property
    def blobs(self) -> tuple[Path, ...]:
        return tuple(b for m in self.models for b in m.blobs)


@dataclasses.dataclass(frozen=True)
class PruneResult:
    """What execution removed, the bytes it freed, and the snapshots it found busy."""

    removed: tuple[Eviction, ...]
    freed_bytes: int
    skipped: tuple[Kept, ...]


# -- scan -----------------------------------------------------------------------------------------
def scan_cache(settings: Settings, model: str | None = None) -> list[CachedSnapshot]:
    """Snapshots of the volume's cache (of `model` only, if given); read-only caches are never scanned."""
    cache = settings.hub_cache
    if _in_readonly_cache(settings, cache) or not cache.is_dir():
        return []
    folders = [cache / repo_folder(model)] if model else sorted(cache.iterdir())
    found = []
    for repo in folders:
        name = model_id_from_folder(repo.name)
        if name is None or repo.is_symlink() or not (repo / "snapshots").is_dir():
            continue
        refs = read_refs(repo)
        for snap in sorted((repo / "snapshots").iterdir()):
            if snap.is_dir() and not snap.is_symlink() and not _in_readonly_cache(settings, snap):
                found.append(_cached_snapshot(settings, name, repo, snap, refs))
    return found


def _cached_snapshot(settings: Settings, model: str, repo: Path, snap: Path, refs: dict[str, str]) -> CachedSnapshot:
    blobs, own = _snapshot_blobs(repo, snap)
    record = next(filter(None, map(read_record, commit_record_paths(settings.records_dir, model, snap.name))), None)
    last_used = _last_used(settings, model, snap, record.completed_at if record else None)
    names = tuple(sorted(r for r, sha in refs.items() if sha == snap.name))
    return CachedSnapshot(model, snap.name, repo, snap, names, blobs, own, last_used, record is not None)


def _snapshot_blobs(repo: Path, snap: Path) -> tuple[frozenset[Path], int]:
    """The blobs the snapshot's links point at (inside `repo/blobs` only) and its own regular files' bytes."""
    blobs_dir = real(repo / "blobs")
    blobs: set[Path] = set()
    own = 0
    for root, dirs, files in os.walk(snap):
        for name in (*files, *dirs):
            path = Path(root, name)
            if path.is_symlink():
                target = real(path)
                if target.parent == blobs_dir:
                    blobs.add(target)
            elif name in files:
                with contextlib.suppress(OSError):
                    own += path.lstat().st_size
    return frozenset(blobs), own


def _last_used(settings: Settings, model: str, snap: Path, completed_at: float | None) -> float:
    """When a worker last loaded the snapshot: its used marker, else its completion, else its folder."""
    with contextlib.suppress(OSError):
        return used_marker(settings, model, snap.name).stat().st_mtime
    if completed_at is not None:
        return completed_at
    with contextlib.suppress(OSError):
        return snap.stat().st_mtime
    return 0.0


def used_marker(settings: Settings, model: str, commit: str) -> Path:
    """The file `ModelStore.mark_used` touches when a worker loads `model@commit`."""
    return used_marker_path(settings.records_dir, model, commit)


def cache_bytes(settings: Settings) -> int:
    """Physical bytes of the repo folders in the volume's cache (each inode once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    cache = settings.hub_cache
    repos = [p for p in cache.iterdir() if p.name.startswith("models--")] if cache.is_dir() else []
    for repo in repos:
        for root, _dirs, files in os.walk(repo):
            for name in files:
                with contextlib.suppress(OSError):
                    st = os.lstat(os.path.join(root, name))
                    if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        total += st.st_size
    return total


# -- safety ---------------------------------------------------------------------------------------
def live_lease(settings: Settings, model: str) -> str | None:
    """Who holds `model`'s download lease, if the lease is live; None when absent, dead or stale."""
    lease = read_marker(ModelStore(settings).lease_path(model), settings.lease_timeout)
    if lease is None or not lease.live:
        return None
    what = f" to {lease.holder.purpose}" if lease.holder and lease.holder.purpose else ""
    who = lease.holder.describe() if lease.holder else "a worker"
    return f"its lease is held by {who}{what} (heartbeat {lease.age:.0f}s ago)"


def _has_partial_download(repo: Path) -> bool:
    return any((repo / "blobs").glob("*.incomplete"))


def protection(settings: Settings, snap: CachedSnapshot, lease: str | None) -> str | None:
    """Why `snap` may not be removed now, or None."""
    if lease is not None:
        return lease
    users = live_users(settings, snap.model, snap.commit)
    if users:
        return "in use by " + ", ".join(u.describe() for u in users)
    if not snap.has_record and _has_partial_download(snap.repo):
        return "being downloaded (.incomplete files and no completion record yet)"
    return None


def _in_readonly_cache(settings: Settings, path: Path) -> bool:
    return is_within(real(path), [real(c) for c in settings.readonly_caches])


# -- plan -----------------------------------------------------------------------------------------
def plan_prune(
    settings: Settings,
    *,
    keep_bytes: int | None = None,
    older_than: float | None = None,
    now: float | None = None,
) -> PrunePlan:
    """Evict least recently used snapshots first: those unused for `older_than` seconds, and more
    while the cache holds over `keep_bytes`."""
    if keep_bytes is None and older_than is None:
        raise ConfigError("prune needs --keep-bytes or --older-than (or both).")
    now = time.time() if now is None else now
    total = cache_bytes(settings)

    def wanted(snap: CachedSnapshot, remaining: int) -> bool:
        old = older_than is not None and now - snap.last_used > older_than
        return old or (keep_bytes is not None and remaining > keep_bytes)

    return _plan(settings, scan_cache(settings), wanted, total)


def plan_remove(settings: Settings, model: str, revision: str | None = None) -> PrunePlan:
    """Evict every snapshot of `model` (or the one `revision` names) that may be removed."""
    check_repo_id(model)
    snaps = scan_cache(settings, model)
    chosen = [s for s in snaps if revision is None or revision == s.commit or revision in s.refs]
    if not chosen:
        raise _not_on_volume(settings, model, revision)
    commits = {s.commit for s in chosen}
    return _plan(settings, snaps, lambda s, _remaining: s.commit in commits, cache_bytes(settings))


def _not_on_volume(settings: Settings, model: str, revision: str | None) -> StoreError:
    what = f"{model}@{revision}" if revision else model
    for cache in settings.readonly_caches:
        if cache.is_dir() and any(p.name.lower() == repo_folder(model).lower() for p in cache.iterdir()):
            return StoreError(f"{what} is in the read-only cache {cache}; volcache never removes it.")
    return ModelNotFound(f"{what} is not in {settings.hub_cache}; `volcache ls` lists what is there.")


def _plan(
    settings: Settings,
    snaps: Sequence[CachedSnapshot],
    wanted: Callable[[CachedSnapshot, int], bool],
    total: int,
) -> PrunePlan:
    leases = {m: live_lease(settings, m) for m in sorted({s.model for s in snaps})}
    refcount = Counter(b for s in snaps for b in s.blobs)
    remaining = total
    chosen: list[tuple[Eviction, tuple[Path, ...]]] = []
    kept: list[Kept] = []
    for snap in sorted(snaps, key=lambda s: (s.last_used, s.model, s.commit)):
        if not wanted(snap, remaining):
            continue
        reason = protection(settings, snap, leases[snap.model])
        if reason is not None:
            kept.append(Kept(snap.model, snap.commit, reason))
            continue
        refcount.subtract(snap.blobs)
        freed_blobs = tuple(sorted(b for b in snap.blobs if refcount[b] == 0))
        freed = snap.own_bytes + sum(_size(b) for b in freed_blobs)
        remaining -= freed
        chosen.append((Eviction(snap, freed), freed_blobs))
    return PrunePlan(_by_model(settings, chosen), tuple(kept), total)


def _by_model(settings: Settings, chosen: Sequence[tuple[Eviction, tuple[Path, ...]]]) -> tuple[ModelPlan, ...]:
    order = list(dict.fromkeys(e.snapshot.model for e, _ in chosen))
    plans = []
    for model in order:
        mine = [(e, b) for e, b in chosen if e.snapshot.model == model]
        snaps = [e.snapshot for e, _ in mine]
        repo = snaps[0].repo
        plans.append(
            ModelPlan(
                model,
                repo,
                tuple(e for e, _ in mine),
                refs=tuple(repo / "refs" / r for s in snaps for r in s.refs),
                snapshots=tuple(p for s in snaps for p in (s.path, repo / ".no_exist" / s.commit)),
                records=tuple(p for s in snaps for p in _record_paths(settings, s)),
                blobs=tuple(b for _, blobs in mine for b in blobs),
            )
        )
    return tuple(plans)


def _record_paths(settings: Settings, snap: CachedSnapshot) -> tuple[Path, ...]:
    return (
        record_path(settings.records_dir, snap.model, snap.commit),
        *selection_record_paths(settings.records_dir, snap.model, snap.commit),
        used_marker(settings, snap.model, snap.commit),
        inuse_dir(settings, snap.model, snap.commit),
    )


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


# -- execute --------------------------------------------------------------------------------------
def execute(settings: Settings, plan: PrunePlan, *, lease_wait: float = LEASE_WAIT) -> PruneResult:
    """Carry out `plan` model by model, each under its download lease; a busy model is skipped."""
    removed: list[Eviction] = []
    skipped: list[Kept] = []
    freed = 0
    store = ModelStore(settings)
    for mp in plan.models:
        lease = Lease(
            store.lease_path(mp.model),
            timeout=settings.lease_timeout,
            max_wait=lease_wait,
            purpose=f"prune {mp.model}",
        )
        try:
            lease.acquire()
        except LeaseTimeout:
            why = "busy: another worker took its download lease"
            skipped.extend(Kept(mp.model, e.snapshot.commit, why) for e in mp.evictions)
            continue
        try:
            done, busy, n = _execute_model(settings, mp)
        finally:
            lease.release()
        removed.extend(done)
        skipped.extend(busy)
        freed += n
    return PruneResult(tuple(removed), freed, tuple(skipped))


def _execute_model(settings: Settings, mp: ModelPlan) -> tuple[list[Eviction], list[Kept], int]:
    """Remove one model's planned snapshots; the caller holds the model's lease."""
    go: list[Eviction] = []
    busy: list[Kept] = []
    for e in mp.evictions:
        reason = _recheck(settings, e.snapshot)
        if reason:
            busy.append(Kept(mp.model, e.snapshot.commit, reason))
        else:
            go.append(e)
    commits = {e.snapshot.commit for e in go}
    for ref in mp.refs:  # 1. refs, so no ref names a missing snapshot
        _remove_ref(ref, commits)
    for path in mp.snapshots:  # 2. snapshot links
        if path.name in commits:
            _remove_tree(path, mp.repo)
    for path in mp.records:  # 3. records, last-use and in-use markers
        if path.name.removesuffix(".json") in commits:
            _remove_record_path(path)
    freed = sum(e.snapshot.own_bytes for e in go)
    freed += _remove_blobs(mp.repo, mp.blobs)  # 4. blobs no remaining snapshot points at
    _tidy(settings, mp)
    for e in go:
        log.info("volcache: removed %s@%s", mp.model, e.snapshot.commit[:8])
    return go, busy, freed


def _recheck(settings: Settings, snap: CachedSnapshot) -> str | None:
    users = live_users(settings, snap.model, snap.commit)
    if users:
        return "in use by " + ", ".join(u.describe() for u in users)
    with contextlib.suppress(OSError):
        if used_marker(settings, snap.model, snap.commit).stat().st_mtime > snap.last_used + 1e-3:
            return "loaded by a worker since the plan was made"
    return None


def _remove_ref(ref: Path, commits: set[str]) -> None:
    with contextlib.suppress(OSError):
        if ref.read_text().strip() in commits:
            ref.unlink()


def _remove_tree(path: Path, repo: Path) -> None:
    """Delete a folder inside `repo` bottom-up; links are removed, never followed."""
    if path.is_symlink():
        path.unlink()
        return
    if not path.is_dir() or real(repo) not in real(path).parents:
        return
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(root, name))
        for name in dirs:
            sub = os.path.join(root, name)
            with contextlib.suppress(FileNotFoundError):
                if os.path.islink(sub):
                    os.unlink(sub)
                else:
                    os.rmdir(sub)
    path.rmdir()


def _remove_record_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():  # an in-use folder: only dead markers are left
        for marker in path.iterdir():
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
        with contextlib.suppress(OSError):
            path.rmdir()
        return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _remove_blobs(repo: Path, planned: Iterable[Path]) -> int:
    """Unlink planned blobs still unreferenced (re-checked now, under the lease); return bytes freed."""
    blobs_dir = real(repo / "blobs")
    still = {b for s in (repo / "snapshots").glob("*") if s.is_dir() for b in _snapshot_blobs(repo, s)[0]}
    freed = 0
    for blob in planned:
        if blob in still or blob.parent != blobs_dir or blob.name.endswith(".incomplete"):
            continue
        size = _size(blob)
        with contextlib.suppress(FileNotFoundError):
            blob.unlink()
            freed += size
    return freed


def _tidy(settings: Settings, mp: ModelPlan) -> None:
    """Remove folders the eviction left empty; a folder with anything in it stays."""
    repo = mp.repo
    refs = repo / "refs"
    nested = sorted((p for p in refs.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) if refs.is_dir() else []
    folder = repo_folder(mp.model)
    records = settings.records_dir
    for d in (
        *nested,
        refs,
        repo / "snapshots",
        repo / ".no_exist",
        repo / "blobs",
        repo,
        records / "records" / folder,
        records / "used" / folder,
        records / "inuse" / folder,
    ):
        with contextlib.suppress(OSError):
            d.rmdir()
