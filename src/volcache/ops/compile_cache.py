"""The compile caches on the volume (vLLM, Inductor, Triton): what `du` reports and `prune` evicts.

The vLLM engine keeps them under `$VOLCACHE_HOME/compile/` (`worker/tasks/_compile_cache.py`):
`<key>/` is a complete entry, never written again, whose modification time a reuse refreshes;
`.incoming-<key>-<id>/` is one being published, or left by a worker killed while publishing.
A running worker reads its own private copy, so deleting an entry never breaks one; a worker
starting at that moment compiles again. They hold compiled graphs and kernels, never weights.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import time
from pathlib import Path

INCOMING_PREFIX = ".incoming-"
# A publish takes seconds; an incoming folder older than this was left by a killed worker.
STALE_INCOMING = 3600.0


@dataclasses.dataclass(frozen=True)
class CompileEntry:
    """One folder of the compile cache, with its size and when it was last used."""

    path: Path
    bytes: int
    last_used: float

    @property
    def incoming(self) -> bool:
        return self.path.name.startswith(INCOMING_PREFIX)


def scan_compile_cache(root: Path) -> list[CompileEntry]:
    """The entries under `root`, oldest first; symlinks are neither followed nor listed."""
    try:
        folders = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
    entries = []
    for folder in folders:
        try:
            entries.append(CompileEntry(folder, _tree_bytes(folder), folder.stat().st_mtime))
        except OSError:
            continue
    return sorted(entries, key=lambda e: e.last_used)


def plan_compile_prune(entries: list[CompileEntry], older_than: float, now: float | None = None) -> list[CompileEntry]:
    """Entries unused for longer than `older_than` seconds, and publishes abandoned for an hour."""
    now = time.time() if now is None else now
    limit = {True: min(older_than, STALE_INCOMING), False: older_than}
    return [e for e in entries if now - e.last_used > limit[e.incoming]]


def remove_entries(root: Path, entries: list[CompileEntry]) -> int:
    """Delete the planned entries (only direct, real folders of `root`); the bytes freed."""
    freed = 0
    for entry in entries:
        path = entry.path
        if path.parent != root or path.is_symlink() or not path.is_dir():
            continue  # the plan names folders of the cache only
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            freed += entry.bytes
    return freed


def _tree_bytes(folder: Path) -> int:
    total = 0
    for base, dirs, files in os.walk(folder):
        for name in files:
            st = os.lstat(os.path.join(base, name))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(base, d))]
    return total
