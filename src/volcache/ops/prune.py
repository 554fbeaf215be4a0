"""`volcache prune` and `volcache rm`: evict whole snapshots from the volume's cache, safely.

Work is planned, then executed (as `huggingface_hub`'s `DeleteCacheStrategy`), so `--dry-run`
is free. A plan never holds a snapshot of a model whose download lease is live, a snapshot
with a live in-use marker (`volcache.store.inuse`), a snapshot being downloaded, or anything in a
read-only cache; `.incomplete` files are never removed. Execution takes each model's download
lease (skipping a busy model), checks again, and removes refs, then snapshot links, then
records, then blobs no remaining snapshot points at, so no ref ever names a missing snapshot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .._errors import ConfigError, LeaseTimeout, ModelNotFound, StoreError
from .._settings import StoreSettings
from ..store import (
    CachedRepo,
    CachedSnapshot,
    RepoFolder,
    VolumeLayout,
    cache_bytes,
    check_repo_id,
    live_users,
    model_lease,
    read_marker,
    repo_folder,
    scan_volume,
    snapshot_blobs,
    volume_clock,
)

log = logging.getLogger("volcache.prune")

LEASE_WAIT = 2.0  # seconds prune waits for a model's lease before leaving that model alone


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
    orphans: tuple[Path, ...] = ()  # blobs no snapshot referenced at all (an interrupted prune's leftovers)

    @property
    def freed_bytes(self) -> int:
        return sum(e.freed_bytes for e in self.evictions) + sum(_size(b) for b in self.orphans)


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
def scan_cache(settings: StoreSettings, model: str | None = None) -> list[CachedSnapshot]:
    """Snapshots of the volume's cache (of `model` only, if given); read-only caches are never scanned."""
    return [snap for repo in _repos(settings, model) for snap in repo.snapshots]


def _repos(settings: StoreSettings, model: str | None = None) -> tuple[CachedRepo, ...]:
    return scan_volume(settings, model, readonly=False).repos


# -- safety ---------------------------------------------------------------------------------------
def live_lease(settings: StoreSettings, model: str) -> str | None:
    """Who holds `model`'s download lease, if the lease is live; None when absent, dead or stale."""
    lease = read_marker(VolumeLayout.of(settings).lease(model), settings.lease_timeout, volume_clock(settings))
    if lease is None or not lease.live:
        return None
    what = f" to {lease.holder.purpose}" if lease.holder and lease.holder.purpose else ""
    who = lease.holder.describe() if lease.holder else "a worker"
    return f"its lease is held by {who}{what} (heartbeat {lease.age:.0f}s ago)"


def _has_partial_download(settings: StoreSettings, model: str) -> bool:
    repo = scan_volume(settings, model, readonly=False).repo(model)
    return repo is not None and repo.partial


def protection(
    settings: StoreSettings, snap: CachedSnapshot, lease: str | None, now: float | None = None
) -> str | None:
    """Why `snap` may not be removed now, or None. `now` is the volume's clock."""
    if lease is not None:
        return lease
    users = live_users(settings, snap.model, snap.commit, now)
    if users:
        return "in use by " + ", ".join(u.describe() for u in users)
    if not snap.has_record and _has_partial_download(settings, snap.model):
        return "being downloaded (.incomplete files and no completion record yet)"
    return None


# -- plan -----------------------------------------------------------------------------------------
def plan_prune(
    settings: StoreSettings,
    *,
    keep_bytes: int | None = None,
    older_than: float | None = None,
    now: float | None = None,
) -> PrunePlan:
    """Evict least recently used snapshots first: those unused for `older_than` seconds, and more
    while the cache holds over `keep_bytes`."""
    if keep_bytes is None and older_than is None:
        raise ConfigError("prune needs --keep-bytes or --older-than (or both).")
    now = volume_clock(settings) if now is None else now
    total = cache_bytes(settings)

    def wanted(snap: CachedSnapshot, remaining: int) -> bool:
        old = older_than is not None and now - snap.last_used > older_than
        return old or (keep_bytes is not None and remaining > keep_bytes)

    return _plan(settings, _repos(settings), wanted, total)


def plan_remove(settings: StoreSettings, model: str, revision: str | None = None) -> PrunePlan:
    """Evict every snapshot of `model` (or the one `revision` names) that may be removed."""
    check_repo_id(model)
    repos = _repos(settings, model)
    snaps = [s for r in repos for s in r.snapshots]
    chosen = [s for s in snaps if revision is None or revision == s.commit or revision in s.refs]
    if not chosen:
        raise _not_on_volume(settings, model, revision)
    commits = {s.commit for s in chosen}
    return _plan(settings, repos, lambda s, _remaining: s.commit in commits, cache_bytes(settings))


def _not_on_volume(settings: StoreSettings, model: str, revision: str | None) -> StoreError:
    what = f"{model}@{revision}" if revision else model
    for cache in settings.readonly_caches:
        if cache.is_dir() and any(p.name.lower() == repo_folder(model).lower() for p in cache.iterdir()):
            return StoreError(f"{what} is in the read-only cache {cache}; volcache never removes it.")
    return ModelNotFound(f"{what} is not in {settings.hub_cache}; `volcache ls` lists what is there.")


def _plan(
    settings: StoreSettings,
    repos: Sequence[CachedRepo],
    wanted: Callable[[CachedSnapshot, int], bool],
    total: int,
) -> PrunePlan:
    snaps = [s for r in repos for s in r.snapshots]
    leases = {r.model: live_lease(settings, r.model) for r in repos}
    now = volume_clock(settings)
    refcount = Counter(b for s in snaps for b in s.blobs)
    remaining = total
    chosen: list[tuple[Eviction, tuple[Path, ...]]] = []
    kept: list[Kept] = []
    for snap in sorted(snaps, key=lambda s: (s.last_used, s.model, s.commit)):
        if not wanted(snap, remaining):
            continue
        reason = protection(settings, snap, leases[snap.model], now)
        if reason is not None:
            kept.append(Kept(snap.model, snap.commit, reason))
            continue
        refcount.subtract(snap.blobs)
        freed_blobs = tuple(sorted(b for b in snap.blobs if refcount[b] == 0))
        freed = snap.own_bytes + sum(_size(b) for b in freed_blobs)
        remaining -= freed
        chosen.append((Eviction(snap, freed), freed_blobs))
    orphans = {r.model: r.unreferenced_blobs for r in repos if r.unreferenced_blobs and leases[r.model] is None}
    return PrunePlan(_by_model(settings, repos, chosen, orphans), tuple(kept), total)


def _by_model(
    settings: StoreSettings,
    repos: Sequence[CachedRepo],
    chosen: Sequence[tuple[Eviction, tuple[Path, ...]]],
    orphans: dict[str, tuple[Path, ...]],
) -> tuple[ModelPlan, ...]:
    layout = VolumeLayout.of(settings)
    plans = []
    for repo in repos:
        mine = [(e, b) for e, b in chosen if e.snapshot.model == repo.model]
        if not mine and repo.model not in orphans:
            continue
        snaps = [e.snapshot for e, _ in mine]
        plans.append(
            ModelPlan(
                repo.model,
                repo.folder.path,
                tuple(e for e, _ in mine),
                refs=tuple(p for s in snaps for p in repo.folder.ref_paths(s.refs)),
                snapshots=tuple(p for s in snaps for p in (s.path, repo.folder.no_exist(s.commit))),
                records=tuple(p for s in snaps for p in layout.snapshot_records(s.model, s.commit)),
                blobs=tuple(b for _, blobs in mine for b in blobs),
                orphans=orphans.get(repo.model, ()),
            )
        )
    order = {e.snapshot.model: i for i, (e, _) in enumerate(chosen)}
    return tuple(sorted(plans, key=lambda p: order.get(p.model, len(order))))


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


# -- execute --------------------------------------------------------------------------------------
def execute(settings: StoreSettings, plan: PrunePlan, *, lease_wait: float = LEASE_WAIT) -> PruneResult:
    """Carry out `plan` model by model, each under its download lease; a busy model is skipped."""
    removed: list[Eviction] = []
    skipped: list[Kept] = []
    freed = 0
    for mp in plan.models:
        lease = model_lease(settings, mp.model, f"prune {mp.model}", max_wait=lease_wait)
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


def _execute_model(settings: StoreSettings, mp: ModelPlan) -> tuple[list[Eviction], list[Kept], int]:
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
    freed += _remove_blobs(mp.repo, (*mp.blobs, *mp.orphans))  # 4. blobs no remaining snapshot points at
    _tidy(settings, mp)
    for e in go:
        log.info("volcache: removed %s@%s", mp.model, e.snapshot.commit[:8])
    return go, busy, freed


def _recheck(settings: StoreSettings, snap: CachedSnapshot) -> str | None:
    users = live_users(settings, snap.model, snap.commit)
    if users:
        return "in use by " + ", ".join(u.describe() for u in users)
    with contextlib.suppress(OSError):
        if VolumeLayout.of(settings).used_marker(snap.model, snap.commit).stat().st_mtime > snap.last_used + 1e-3:
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
    if not path.is_dir() or _real(repo) not in _real(path).parents:
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
    folder = RepoFolder(repo)
    blobs_dir = _real(folder.blobs)
    still = {b for s in folder.snapshots.glob("*") if s.is_dir() for b in snapshot_blobs(folder, s)[0]}
    freed = 0
    for blob in planned:
        if blob in still or blob.parent != blobs_dir or blob.name.endswith(".incomplete"):
            continue
        size = _size(blob)
        with contextlib.suppress(FileNotFoundError):
            blob.unlink()
            freed += size
    return freed


def _tidy(settings: StoreSettings, mp: ModelPlan) -> None:
    """Remove folders the eviction left empty; a folder with anything in it stays."""
    for d in (*RepoFolder(mp.repo).folders_to_tidy(), *VolumeLayout.of(settings).record_folders_to_tidy(mp.model)):
        with contextlib.suppress(OSError):
            d.rmdir()


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))
