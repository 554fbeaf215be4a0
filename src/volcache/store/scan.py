"""The one scan of the volume: models → snapshots, with sizes, refs, record state, blobs and last use.

`ls`, `doctor`, `prune`, `rm` and the store's own look-ups read the cache through `scan_volume`;
`verify` and the store read completion records through `records_of`. A corrupt or unreadable
entry becomes a note on that entry, never an exception that aborts the scan (huggingface_hub's
`scan_cache_dir` does the same).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

from .._settings import StoreSettings
from .layout import SHA1_RE, STAGING_PREFIX, RepoFolder, VolumeLayout, model_id_from_folder, repo_folder
from .record import CompletionRecord, read_record, snapshot_mismatches
from .weights import snapshot_bytes, tree_bytes


@dataclasses.dataclass(frozen=True)
class CachedSnapshot:
    """One snapshot folder of one model in a cache, and what volcache knows about it."""

    model: str
    commit: str
    repo: RepoFolder
    refs: tuple[str, ...]
    bytes: int  # the record's total, or the bytes the folder shows when there is no record
    complete: bool
    readonly: bool = False
    note: str = ""
    record: CompletionRecord | None = None  # the default selection's record, else another complete one
    selections: tuple[str, ...] = ()  # the complete records' selections: "default", "fp16", "file=*Q4_K_M.gguf"
    blobs: frozenset[Path] = frozenset()  # the blobs its links point at (inside the repo's blobs/ only)
    own_bytes: int = 0  # regular files inside the snapshot folder (a no-symlink fallback copy)
    last_used: float = 0.0  # its used marker's mtime, else its completion time, else its folder's mtime

    @property
    def path(self) -> Path:
        return self.repo.snapshot(self.commit)

    @property
    def has_record(self) -> bool:
        return self.record is not None

    @property
    def state(self) -> str:
        if self.readonly:
            return "read-only"
        return "complete" if self.complete else "incomplete"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "commit": self.commit,
            "refs": list(self.refs),
            "path": str(self.path),
            "bytes": self.bytes,
            "complete": self.complete,
            "readonly": self.readonly,
            "note": self.note,
            "state": self.state,
            "selections": list(self.selections),
        }


@dataclasses.dataclass(frozen=True)
class CachedRepo:
    """One model's repo folder: its snapshots, and the blobs none of them points at."""

    model: str
    folder: RepoFolder
    snapshots: tuple[CachedSnapshot, ...]
    unreferenced_blobs: tuple[Path, ...]  # finished blobs no snapshot links to (left by an interrupted prune)
    partial: bool  # `.incomplete` files or a download's staging folder exist


@dataclasses.dataclass(frozen=True)
class VolumeScan:
    """The volume's cache (each repo) and, apart, the snapshots of the read-only caches."""

    repos: tuple[CachedRepo, ...]
    readonly: tuple[CachedSnapshot, ...]

    @property
    def snapshots(self) -> tuple[CachedSnapshot, ...]:
        """The volume's snapshots, then the read-only ones."""
        return (*(s for r in self.repos for s in r.snapshots), *self.readonly)

    def repo(self, model: str) -> CachedRepo | None:
        return next((r for r in self.repos if r.model == model), None)


def scan_volume(settings: StoreSettings, model: str | None = None, *, readonly: bool = True) -> VolumeScan:
    """Scan the volume's hub cache (only `model`'s repo, if given) and, with `readonly`, the read-only caches."""
    layout = VolumeLayout.of(settings)
    repos: list[CachedRepo] = []
    if not in_readonly_cache(settings, settings.hub_cache):
        found = [(model, layout.repo(model))] if model else layout.repos()
        repos = [_scan_repo(layout, name, folder) for name, folder in found if folder.path.is_dir()]
    ro: list[CachedSnapshot] = []
    if readonly:
        for cache in settings.readonly_caches:
            ro.extend(_readonly_snapshots(cache))
    return VolumeScan(tuple(repos), tuple(ro))


def _scan_repo(layout: VolumeLayout, model: str, folder: RepoFolder) -> CachedRepo:
    refs = folder.read_refs()
    snaps = []
    for snap in _folders(folder.snapshots):
        names = tuple(sorted(r for r, sha in refs.items() if sha == snap.name))
        snaps.append(_volume_snapshot(layout, model, folder, snap, names))
    referenced = {b for s in snaps for b in s.blobs}
    blobs, partial = _blobs(folder)
    return CachedRepo(model, folder, tuple(snaps), tuple(b for b in blobs if b not in referenced), partial)


def _volume_snapshot(
    layout: VolumeLayout, model: str, folder: RepoFolder, snap: Path, refs: tuple[str, ...]
) -> CachedSnapshot:
    blobs, own = snapshot_blobs(folder, snap)
    records = [r for r in map(read_record, layout.commit_records(model, snap.name)) if r is not None]
    problems = {r.selection.label: snapshot_mismatches(snap, r) for r in records}
    selections = tuple(label for label, found in problems.items() if not found)
    complete_records = [r for r in records if r.selection.label in selections]
    record = next(iter(complete_records or records), None)
    last = _last_used(layout.used_marker(model, snap.name), snap, record)
    if record is None:
        size, complete, note = snapshot_bytes(snap), False, "no completion record"
    else:
        files = {f.path: f.size for r in (complete_records or [record]) for f in r.files}
        size, complete = sum(files.values()), bool(selections)
        note = "; ".join(p for found in problems.values() for p in found[:3])
    return CachedSnapshot(
        model,
        snap.name,
        folder,
        refs,
        size,
        complete,
        note=note,
        record=record,
        blobs=blobs,
        own_bytes=own,
        last_used=last,
        selections=selections,
    )


def _readonly_snapshots(cache: Path) -> list[CachedSnapshot]:
    found = []
    for entry in _folders(cache):
        model = model_id_from_folder(entry.name)
        folder = RepoFolder(entry)
        if model is None:
            continue
        refs = folder.read_refs()
        for snap in _folders(folder.snapshots):
            names = tuple(sorted(r for r, sha in refs.items() if sha == snap.name))
            found.append(CachedSnapshot(model, snap.name, folder, names, snapshot_bytes(snap), True, readonly=True))
    return found


def _folders(parent: Path) -> list[Path]:
    """The real sub-folders of `parent` (no symlinks), sorted; none when it cannot be read."""
    try:
        return sorted(p for p in parent.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def snapshot_blobs(folder: RepoFolder, snap: Path) -> tuple[frozenset[Path], int]:
    """The blobs the snapshot's links point at (inside the repo's blobs/ only) and its own regular files' bytes."""
    blobs_dir = Path(os.path.realpath(folder.blobs))
    blobs: set[Path] = set()
    own = 0
    for root, dirs, files in os.walk(snap):
        for name in (*files, *dirs):
            path = Path(root, name)
            if path.is_symlink():
                target = Path(os.path.realpath(path))
                if target.parent == blobs_dir:
                    blobs.add(target)
            elif name in files:
                with contextlib.suppress(OSError):
                    own += path.lstat().st_size
    return frozenset(blobs), own


def _blobs(folder: RepoFolder) -> tuple[list[Path], bool]:
    """Finished blobs of the repo (real paths), and whether a download left partial files."""
    blobs_dir = Path(os.path.realpath(folder.blobs))
    try:
        entries = sorted(blobs_dir.iterdir())
    except OSError:
        return [], False
    partial = any(e.name.endswith(".incomplete") or e.name.startswith(STAGING_PREFIX) for e in entries)
    done = [e for e in entries if not e.name.startswith(".") and not e.name.endswith(".incomplete") and e.is_file()]
    return done, partial


def _last_used(marker: Path, snap: Path, record: CompletionRecord | None) -> float:
    with contextlib.suppress(OSError):
        return marker.stat().st_mtime
    if record is not None:
        return record.completed_at
    with contextlib.suppress(OSError):
        return snap.stat().st_mtime
    return 0.0


def records_of(settings: StoreSettings, model: str) -> list[CompletionRecord]:
    """Every readable completion record of `model` on the volume, newest first."""
    folder = VolumeLayout.of(settings).records_folder(model)
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return []
    records = [r for r in map(read_record, paths) if r is not None]
    return sorted(records, key=lambda r: -r.completed_at)


def recorded_models(settings: StoreSettings) -> list[str]:
    """Models with a records folder on the volume."""
    return VolumeLayout.of(settings).record_models()


def cache_bytes(settings: StoreSettings) -> int:
    """Physical bytes of the repo folders in the volume's cache (each inode once)."""
    return sum(tree_bytes(folder.path) for _, folder in VolumeLayout.of(settings).repos())


def find_readonly_snapshot(cache: Path, model: str, revision: str) -> Path | None:
    """A snapshot of `model@revision` in a read-only cache; RunPod lower-cases repo folder names."""
    wanted = repo_folder(model).lower()
    for entry in _folders(cache):
        if entry.name.lower() != wanted:
            continue
        folder = RepoFolder(entry)
        commit = revision if _is_commit(revision) else folder.read_ref(revision)
        if commit is None:
            snaps = sorted(_folders(folder.snapshots), key=lambda p: p.stat().st_mtime)
            if revision != "main" or len(snaps) != 1:
                continue
            commit = snaps[0].name
        snap = folder.snapshot(commit)
        if snap.is_dir() and any(snap.iterdir()) and not _blobs(folder)[1]:
            return snap
    return None


def _is_commit(revision: str) -> bool:
    return bool(SHA1_RE.match(revision))


def in_readonly_cache(settings: StoreSettings, path: Path) -> bool:
    """True when `path` is, or lies inside, one of the read-only caches."""
    where = Path(os.path.realpath(path))
    caches = [Path(os.path.realpath(c)) for c in settings.readonly_caches]
    return any(where == c or c in where.parents for c in caches)
