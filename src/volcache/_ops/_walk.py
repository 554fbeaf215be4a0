"""Find weight files under a folder without following symlinks, within a depth and a deadline.

A weight file is a regular file with a weight suffix (`volcache._files.WEIGHT_SUFFIXES`), or a
file that a weight-named symlink in the same tree points at: that is how a Hugging Face cache
holds weights (`snapshots/<commit>/model.safetensors -> ../../blobs/<sha256>`). The link itself
is never counted and never descended into; its target counts only when it lies under the root.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .._files import is_weight_file

# Kernel and device trees are never weights and can be huge or hang.
PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))


@dataclasses.dataclass(frozen=True)
class WeightFile:
    """One weight file on disk: its path and identity (device, inode)."""

    path: Path
    size: int
    dev: int
    ino: int
    link: Path | None = None  # the weight-named symlink that names it (a cache blob)

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.ino)


@dataclasses.dataclass(frozen=True)
class WalkResult:
    """The weight files under one root, and why the walk stopped early, if it did."""

    root: Path
    files: tuple[WeightFile, ...]
    truncated: str | None = None
    unreadable: int = 0


def real(path: Path) -> Path:
    """`path` made absolute with every symlink resolved (for comparing locations)."""
    return Path(os.path.realpath(path))


def is_within(path: Path, folders: Iterable[Path]) -> bool:
    """True when `path` is one of `folders` or lies inside one of them."""
    return any(path == f or f in path.parents for f in folders)


def walk_weights(
    root: Path,
    *,
    skip: Iterable[Path] = (),
    max_depth: int | None = None,
    deadline: float | None = None,
) -> WalkResult:
    """Weight files under `root`, never entering `skip` folders, pseudo filesystems or symlinks.

    `deadline` is a `time.monotonic()` value; past it the walk stops and says so.
    """
    top = real(root)
    skipped = (*(real(p) for p in skip), *PSEUDO_FILESYSTEMS)
    if is_within(top, skipped) or not top.is_dir():
        return WalkResult(root, ())
    files: dict[tuple[int, int], WeightFile] = {}
    unreadable = 0
    truncated = None
    stack: list[tuple[Path, int]] = [(top, 0)]
    while stack:
        if deadline is not None and time.monotonic() > deadline:
            truncated = "time limit reached"
            break
        folder, depth = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            unreadable += 1
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=False):
                    if is_within(path, skipped):
                        continue
                    if max_depth is not None and depth + 1 > max_depth:
                        truncated = f"deeper than {max_depth} levels not searched"
                        continue
                    stack.append((path, depth + 1))
                elif is_weight_file(entry.name):
                    found = _weight_entry(entry, top, skipped)
                    if found is not None:
                        files.setdefault(found.key, found)
            except OSError:
                unreadable += 1
    return WalkResult(root, tuple(sorted(files.values(), key=lambda f: str(f.path))), truncated, unreadable)


def _weight_entry(entry: os.DirEntry[str], top: Path, skipped: tuple[Path, ...]) -> WeightFile | None:
    """The file a weight-named entry stands for, or None (a link out of the tree, a dangling link)."""
    st = entry.stat(follow_symlinks=False)
    if stat.S_ISREG(st.st_mode):
        return WeightFile(Path(entry.path), st.st_size, st.st_dev, st.st_ino)
    if not stat.S_ISLNK(st.st_mode):
        return None
    target = real(Path(entry.path))
    if top not in target.parents or is_within(target, skipped):
        return None
    try:
        tst = target.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(tst.st_mode):
        return None
    return WeightFile(target, tst.st_size, tst.st_dev, tst.st_ino, link=Path(entry.path))


def iter_unique(results: Iterable[WalkResult]) -> Iterator[tuple[WalkResult, WeightFile]]:
    """Each weight file once across several walks (hard links and overlapping roots counted once)."""
    seen: set[tuple[int, int]] = set()
    for result in results:
        for f in result.files:
            if f.key not in seen:
                seen.add(f.key)
                yield result, f
