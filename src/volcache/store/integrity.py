"""The one file check: size for every file, sha256 for LFS files, the git blob id for the others.

The download checks each file with `check_file` before it is renamed into `blobs/`, and
`volcache verify` re-checks snapshots against their completion records with the same function.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .layout import SHA1_RE
from .selection import RemoteFile
from .volume import retry_io

HASH_CHUNK = 8 * 1024 * 1024
Progress = Callable[[int], None]


def hash_file(path: Path, h: Any, on_chunk: Progress | None = None) -> str:
    """Feed `path` to the hash object `h` in large chunks; `on_chunk(n)` reports progress."""
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
    return str(h.hexdigest())


def sha256_file(path: Path) -> str:
    return hash_file(path, hashlib.sha256())


def git_blob_header(size: int) -> Any:
    """A sha1 primed with git's blob header: fed the content, it gives the id the Hub's tree lists."""
    return hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)


def check_file(
    path: Path,
    f: RemoteFile,
    progress: Progress | None = None,
    *,
    inside: Path | None = None,
    source: str = "the Hub's",
) -> str | None:
    """What is wrong with the file at `path` as `f` describes it, or None when it matches.

    With `inside`, a link must resolve into that folder (a snapshot's links stay in their repo).
    `progress(n)` is told the bytes read (a skipped hash counts as read). `source` names where
    `f` came from in the message ("the Hub's" listing, "the record's").
    """
    try:
        size = retry_io(path.stat).st_size
    except FileNotFoundError:
        return "missing" if not path.is_symlink() else "link points at a missing blob"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if inside is not None and path.is_symlink():
        target = Path(os.path.realpath(path))
        if Path(os.path.realpath(inside)) not in target.parents:
            return f"link points outside the repo folder, at {target}"
    if size != f.size:
        _advance(progress, f.size)
        who = source.removesuffix("'s")
        return f"{size} bytes on disk, {who} says {f.size}"
    return content_problem(path, f, progress, source)


def content_problem(
    path: Path, f: RemoteFile, progress: Progress | None = None, source: str = "the Hub's"
) -> str | None:
    """The hash check alone (the size is known to match)."""
    h = hasher_for(f)
    if h is None:
        _advance(progress, f.size)
        return None
    try:
        digest = hash_file(path, h, lambda n: _advance(progress, n))
    except OSError:
        return "unreadable"
    return digest_problem(digest, f, source)


def hasher_for(f: RemoteFile) -> Any:
    """A fresh hash object whose hex digest of `f`'s content is `f`'s id; None for an id that is no hash."""
    if f.sha256 is not None:
        return hashlib.sha256()
    if SHA1_RE.match(f.oid):
        return git_blob_header(f.size)
    return None


def digest_problem(digest: str, f: RemoteFile, source: str = "the Hub's") -> str | None:
    """What is wrong when content hashed (by `hasher_for(f)`) to `digest`, or None when it is `f`'s."""
    want, kind = (f.sha256, "sha256") if f.sha256 is not None else (f.oid, "git blob id")
    return None if digest == want else f"{kind} {digest[:12]}… does not match {source} {want[:12]}…"


def _advance(progress: Progress | None, n: int) -> None:
    if progress is not None:
        progress(n)
