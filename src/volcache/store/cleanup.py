"""Delete stale build-time caches (such as the seed's /tmp/models) without ever migrating them (I6).

Deletion is deliberately narrow: only the listed paths, never through a symlink (a link
is removed, its target is not), never across a mount point, never the volume, a path
inside it, a path that contains it, or `/`; and never a protected location (`protected_locations`:
HF_HOME and the hub cache, the read-only caches, a local model folder; the user's home folder
itself): an entry that is one, contains one or lies inside one is refused with one log line.
Each entry is normalised first, so `/data/other/..` is judged as `/data`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from .._errors import CleanupRefused
from .._settings import StoreSettings, format_bytes

log = logging.getLogger("volcache.cleanup")


@dataclasses.dataclass(frozen=True)
class CleanupReport:
    """What `remove_stale_caches` did, path by path."""

    removed: tuple[tuple[Path, int], ...] = ()  # (path, bytes freed)
    refused: tuple[tuple[Path, str], ...] = ()  # (path, reason)
    skipped_mounts: tuple[Path, ...] = ()  # mount points found inside a stale path, left alone

    @property
    def bytes_freed(self) -> int:
        return sum(n for _, n in self.removed)


@dataclasses.dataclass(frozen=True)
class Protected:
    """A location cleanup must never delete, and how far the protection reaches."""

    path: Path
    why: str
    inside_too: bool = True  # False: the folder itself and what contains it are refused, not what lies inside


def protected_locations(settings: StoreSettings) -> tuple[Protected, ...]:
    """What a stale-cache entry may not be, contain, or (for most) lie inside."""
    found = [
        Protected(settings.home, "HF_HOME (VOLCACHE_HOME), where the weights are kept"),
        Protected(settings.hub_cache, "the hub cache"),
        *(Protected(c, "a read-only cache used in place") for c in settings.readonly_caches),
    ]
    model = Path(settings.model)
    if model.is_absolute() or settings.model.startswith("."):
        found.append(Protected(model.absolute(), "the local model folder MODEL_NAME"))
    if settings.user_home is not None:
        found.append(Protected(settings.user_home, "the home folder", inside_too=False))
    return tuple(found)


def _location(path: Path) -> Path:
    """Where `path` is: the parent resolved, never the entry itself (it may be a link not to follow).

    An entry ending in `..` or `.` names a folder, not a link: it is resolved whole.
    """
    if path.name in ("", ".", ".."):
        return Path(os.path.realpath(path))
    return Path(os.path.realpath(path.parent)) / path.name


def _overlap(where: Path, guard: Protected) -> str | None:
    spot = Path(os.path.realpath(guard.path))
    if where == spot:
        return f"is {guard.why} ({guard.path})"
    if where in spot.parents:
        return f"contains {guard.why} ({guard.path})"
    if guard.inside_too and spot in where.parents:
        return f"lies inside {guard.why} ({guard.path})"
    return None


def check_deletable(path: Path, volume: Path, protected: Sequence[Protected] = ()) -> Path:
    """Return the absolute, parent-resolved location of `path`, or raise `CleanupRefused`."""
    if not path.is_absolute():
        raise CleanupRefused(f"{path} is not an absolute path; list stale caches as absolute paths.", path=path)
    where = _location(path)
    vol = Path(os.path.realpath(volume))
    if where == Path("/") or path == Path("/"):
        raise CleanupRefused("refusing to delete '/'.")
    if where == vol or vol in where.parents:
        raise CleanupRefused(f"{path} is on the volume {volume}; the volume holds the only copy of the weights.")
    if where in vol.parents:
        raise CleanupRefused(f"{path} contains the volume {volume}.")
    if os.path.ismount(where):
        raise CleanupRefused(f"{path} is a mount point; unmount it or list a folder inside it.")
    for guard in protected:
        why = _overlap(where, guard)
        if why is not None:
            raise CleanupRefused(f"{path} {why}; remove it from VOLCACHE_STALE_CACHES.", path=path)
    return where


def remove_stale_caches(paths: Iterable[Path], volume: Path, protected: Sequence[Protected] = ()) -> CleanupReport:
    """Delete each listed path that exists and may be deleted; report bytes freed and refusals.

    Pass `protected_locations(settings)` as `protected`: the worker does.
    """
    removed: list[tuple[Path, int]] = []
    refused: list[tuple[Path, str]] = []
    mounts: list[Path] = []
    for path in paths:
        try:
            where = check_deletable(path, volume, protected)
        except CleanupRefused as exc:
            refused.append((path, str(exc)))
            log.warning("volcache: stale cache %s not removed: %s", path, exc)
            continue
        try:
            st = where.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            freed = _delete_tree(where, st.st_dev, mounts)
        else:  # a file or a symlink: remove the entry itself, never its target
            freed = st.st_size if stat.S_ISREG(st.st_mode) else 0
            where.unlink()
        removed.append((path, freed))
        log.info("volcache: removed stale cache %s (%s freed)", path, format_bytes(freed))
    return CleanupReport(tuple(removed), tuple(refused), tuple(mounts))


def _delete_tree(root: Path, device: int, mounts: list[Path]) -> int:
    freed = 0
    with os.scandir(root) as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev != device:
                    mounts.append(Path(entry.path))
                    continue
                freed += _delete_tree(Path(entry.path), device, mounts)
            else:
                if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                    freed += st.st_size
                os.unlink(entry.path)
    with contextlib.suppress(OSError):  # a mount point below keeps it non-empty
        root.rmdir()
    return freed
