"""The files of a repository as the Hub lists them, which listed paths are safe to write,
and the files a worker needs (decided by `volcache._selection`, which follows the loaders).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath

from ._errors import UnsafeRepoPath
from ._selection import WEIGHT_SUFFIXES, Selection, is_weight_file, plan_selection

__all__ = [
    "WEIGHT_SUFFIXES",
    "RemoteFile",
    "check_commit",
    "check_listing",
    "check_repo_id",
    "is_weight_file",
    "select_needed",
]

MAX_FILE_SIZE = 2 * 1000**4  # 2 TB: anything larger in a listing is an error, not a model
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file of a repository at a commit, as the Hub lists it."""

    path: str
    size: int
    sha256: str | None  # set for LFS files: the blob is named by it and must hash to it
    oid: str  # git blob id for regular files, sha256 for LFS files: the blob's file name

    @property
    def is_weight(self) -> bool:
        return self.path.lower().endswith(WEIGHT_SUFFIXES)


def check_repo_id(repo_id: str) -> str:
    """Refuse repo ids that are not `name` or `org/name` before they reach a path."""
    if not _REPO_ID_RE.match(repo_id) or ".." in repo_id:
        raise UnsafeRepoPath(
            f"{repo_id!r} is not a Hugging Face model id; use the form org/name, "
            "e.g. sentence-transformers/all-MiniLM-L6-v2."
        )
    return repo_id


def check_commit(sha: str) -> str:
    if not isinstance(sha, str) or not _SHA_RE.match(sha):
        raise UnsafeRepoPath(f"the Hub returned {sha!r} as a commit id; expected 40 hex digits.")
    return sha


def check_listing(files: Iterable[RemoteFile]) -> list[RemoteFile]:
    """Refuse a listing with paths that would escape the snapshot folder, or absurd sizes."""
    checked = []
    for f in files:
        path = PurePosixPath(f.path)
        bad = (
            not f.path
            or path.is_absolute()
            or any(part in ("", ".", "..") for part in f.path.split("/"))
            or "\\" in f.path
            or "\x00" in f.path
            or f.path.startswith("~")
        )
        if bad:
            raise UnsafeRepoPath(f"the Hub listed the unsafe path {f.path!r}; refusing to download this model.")
        if not 0 <= f.size <= MAX_FILE_SIZE:
            raise UnsafeRepoPath(f"the Hub listed {f.path!r} with an impossible size of {f.size} bytes.")
        if f.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", f.sha256):
            raise UnsafeRepoPath(f"the Hub listed {f.path!r} with a malformed sha256 {f.sha256!r}.")
        if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", f.oid):
            raise UnsafeRepoPath(f"the Hub listed {f.path!r} with a malformed blob id {f.oid!r}.")
        checked.append(f)
    return checked


def select_needed(
    files: Sequence[RemoteFile], include: Sequence[str] = (), contents: Mapping[str, bytes] | None = None
) -> list[RemoteFile]:
    """The files the loader opens (`volcache._selection`), for a listing whose deciding files are in `contents`."""
    plan = plan_selection(files, contents or {}, Selection(include=tuple(include)))
    return [f for f in files if f.path in plan.kept_paths]
