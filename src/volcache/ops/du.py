"""`volcache du`: the physical bytes of weight files per location, and how much of it is duplicated.

Physical bytes count each file once by identity (device, inode), so hard links are free;
unique bytes count each content once (same size, then same sha256). Their ratio is 1.00 when
the one-copy contract holds and 2.00 when every weight exists twice (the seed's copytree).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..store import Filter, WalkResult, WeightFile, iter_unique, walk_weights
from ..store.integrity import sha256_file

_HEAD = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Location:
    """A named place to measure (the volume, the container disk, a path given) and its roots."""

    name: str
    roots: tuple[Path, ...]
    skip: tuple[Path, ...] = ()


@dataclasses.dataclass(frozen=True)
class LocationUsage:
    """Weight files first found in one location (a file seen in an earlier location is not recounted)."""

    name: str
    roots: tuple[Path, ...]
    files: int
    physical_bytes: int
    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class DuplicateGroup:
    """Distinct files (different inodes) with the same content."""

    sha256: str
    size: int
    paths: tuple[Path, ...]

    @property
    def wasted_bytes(self) -> int:
        return self.size * (len(self.paths) - 1)


@dataclasses.dataclass(frozen=True)
class DuReport:
    """Weight bytes per location, the duplicate groups, and the duplication ratio."""

    locations: tuple[LocationUsage, ...]
    duplicates: tuple[DuplicateGroup, ...]
    physical_bytes: int
    unique_bytes: int

    @property
    def ratio(self) -> float:
        """Physical ÷ unique bytes: 1.00 when every weight exists once."""
        return self.physical_bytes / self.unique_bytes if self.unique_bytes else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "locations": [
                {**dataclasses.asdict(loc), "roots": [str(r) for r in loc.roots], "notes": list(loc.notes)}
                for loc in self.locations
            ],
            "duplicates": [
                {"sha256": d.sha256, "size": d.size, "paths": [str(p) for p in d.paths], "wasted_bytes": d.wasted_bytes}
                for d in self.duplicates
            ],
            "physical_bytes": self.physical_bytes,
            "unique_bytes": self.unique_bytes,
            "ratio": round(self.ratio, 4),
        }


def measure(locations: Sequence[Location], *, sha256: Callable[[Path], str] | None = None) -> DuReport:
    """Walk each location (never following symlinks) and measure its weight files."""
    walks = [[walk_weights(root, skip=loc.skip, keep=Filter.likely()) for root in loc.roots] for loc in locations]
    usage: list[LocationUsage] = []
    unique_files: list[WeightFile] = []
    seen: set[tuple[int, int]] = set()
    for loc, results in zip(locations, walks, strict=True):
        mine = [f for _, f in iter_unique(results) if f.key not in seen]
        seen.update(f.key for f in mine)
        unique_files.extend(mine)
        usage.append(LocationUsage(loc.name, loc.roots, len(mine), sum(f.size for f in mine), _notes(results)))
    groups = find_duplicates(unique_files, sha256=sha256 or sha256_file)
    physical = sum(f.size for f in unique_files)
    wasted = sum(g.wasted_bytes for g in groups)
    return DuReport(tuple(usage), groups, physical, physical - wasted)


def find_duplicates(files: Iterable[WeightFile], *, sha256: Callable[[Path], str]) -> tuple[DuplicateGroup, ...]:
    """Groups of distinct files with equal content: grouped by size, then a 1 MiB head hash, then sha256."""
    by_size: dict[int, list[WeightFile]] = defaultdict(list)
    for f in files:
        by_size[f.size].append(f)
    groups: list[DuplicateGroup] = []
    for size, same_size in by_size.items():
        if len(same_size) < 2 or size == 0:
            continue
        for candidates in _split(same_size, _head_hash):
            for digest, same in _split_keyed(candidates, lambda f: sha256(f.path)):
                groups.append(DuplicateGroup(digest, size, tuple(sorted(f.path for f in same))))
    return tuple(sorted(groups, key=lambda g: (-g.wasted_bytes, g.sha256)))


def _head_hash(f: WeightFile) -> str:
    with open(f.path, "rb") as fh:
        return hashlib.sha256(fh.read(_HEAD)).hexdigest()


def _split(files: list[WeightFile], key: Callable[[WeightFile], str]) -> list[list[WeightFile]]:
    return [same for _, same in _split_keyed(files, key)]


def _split_keyed(files: list[WeightFile], key: Callable[[WeightFile], str]) -> list[tuple[str, list[WeightFile]]]:
    """Files bucketed by `key`, keeping buckets of two or more; unreadable files are left out."""
    buckets: dict[str, list[WeightFile]] = defaultdict(list)
    for f in files:
        try:
            buckets[key(f)].append(f)
        except OSError:
            continue
    return [(k, same) for k, same in buckets.items() if len(same) > 1]


def _notes(results: Iterable[WalkResult]) -> tuple[str, ...]:
    notes = []
    for r in results:
        if r.truncated:
            notes.append(f"{r.root}: {r.truncated}")
        if r.unreadable:
            notes.append(f"{r.root}: {r.unreadable} entries could not be read")
    return tuple(notes)


def default_locations(
    volume: Path, hub_cache: Path, container_roots: Sequence[Path], paths: Sequence[Path] = ()
) -> list[Location]:
    """The volume (with the cache if it lives elsewhere), the container disk minus the volume, then `paths`."""
    vol_roots = [volume]
    real = os.path.realpath
    if not (real(hub_cache) == real(volume) or Path(real(volume)) in Path(real(hub_cache)).parents):
        vol_roots.append(hub_cache)
    locations = [
        Location("volume", tuple(vol_roots)),
        Location("container disk", tuple(container_roots), skip=tuple(vol_roots)),
    ]
    locations.extend(Location(str(p), (p,)) for p in paths)
    return locations
