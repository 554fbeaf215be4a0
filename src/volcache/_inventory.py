"""What is on the volume: every snapshot in the cache, with its completion state and size.

A corrupt or unreadable entry becomes a note on that entry, never an exception that
aborts the listing (huggingface_hub's `scan_cache_dir` does the same).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ._record import commit_record_paths, read_record, snapshot_mismatches
from ._settings import Settings


@dataclasses.dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot folder of one model in a cache."""

    model: str
    commit: str
    refs: tuple[str, ...]
    path: Path
    bytes: int
    complete: bool
    readonly: bool = False
    note: str = ""
    selections: tuple[str, ...] = ()  # the complete records' selections: "default", "fp16", "file=*Q4_K_M.gguf"

    @property
    def state(self) -> str:
        if self.readonly:
            return "read-only"
        return "complete" if self.complete else "incomplete"


def model_id_from_folder(name: str) -> str | None:
    """`models--org--name` -> `org/name`; None for folders that are not model repos."""
    if not name.startswith("models--"):
        return None
    return "/".join(name.split("--")[1:])


def list_snapshots(settings: Settings) -> list[SnapshotInfo]:
    """Snapshots in the volume's cache, then those of the read-only caches."""
    found = _scan(settings.hub_cache, settings, readonly=False)
    for cache in settings.readonly_caches:
        found.extend(_scan(cache, settings, readonly=True))
    return found


def _scan(cache: Path, settings: Settings, *, readonly: bool) -> list[SnapshotInfo]:
    if not cache.is_dir():
        return []
    infos = []
    for repo in sorted(cache.iterdir()):
        model = model_id_from_folder(repo.name)
        snapshots = repo / "snapshots"
        if model is None or not snapshots.is_dir():
            continue
        refs = read_refs(repo)
        for snap in sorted(snapshots.iterdir()):
            infos.append(_snapshot_info(model, repo, snap, refs, settings, readonly))
    return infos


def _snapshot_info(
    model: str, repo: Path, snap: Path, refs: dict[str, str], settings: Settings, readonly: bool
) -> SnapshotInfo:
    names = tuple(sorted(r for r, sha in refs.items() if sha == snap.name))
    size = _snapshot_bytes(snap)
    if readonly:
        return SnapshotInfo(model, snap.name, names, snap, size, True, readonly=True)
    records = [r for r in map(read_record, commit_record_paths(settings.records_dir, model, snap.name)) if r]
    if not records:
        return SnapshotInfo(model, snap.name, names, snap, size, False, note="no completion record")
    problems = {r.selection.label: snapshot_mismatches(snap, r) for r in records}
    complete = tuple(label for label, found in problems.items() if not found)
    note = "; ".join(p for found in problems.values() for p in found[:3])
    files = {f.path: f.size for r in records if r.selection.label in complete for f in r.files}
    recorded = sum(files.values()) if complete else max(r.total_bytes for r in records)
    return SnapshotInfo(model, snap.name, names, snap, recorded, bool(complete), note=note, selections=complete)


def read_refs(repo: Path) -> dict[str, str]:
    refs_dir = repo / "refs"
    if not refs_dir.is_dir():
        return {}
    refs = {}
    for ref in refs_dir.rglob("*"):
        if ref.is_file() and not ref.name.startswith("."):
            try:
                refs[str(ref.relative_to(refs_dir))] = ref.read_text().strip()
            except OSError:
                continue
    return refs


def _snapshot_bytes(snap: Path) -> int:
    """Bytes of the files a snapshot points at (each blob counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(snap):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
