"""`volcache verify`: re-hash snapshots against their completion records, and repair broken files.

Every file is checked for presence and size; LFS files for their sha256 and regular files for
their git blob id, both as the record lists them. Repair works under the model's download lease:
it removes only the broken blob and its links, then downloads those files again through the
store, so the record (which states what the files must be) is never rewritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .._errors import ModelNotFound, StoreError
from .._files import RemoteFile
from .._inventory import model_id_from_folder
from .._lease import Lease
from .._record import CompletionRecord, read_record, repo_folder
from .._settings import Settings
from .._store import ModelStore, git_blob_header, hash_file, read_ref
from ._walk import real

log = logging.getLogger("volcache.verify")

_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
Progress = Callable[[int], None]


@dataclasses.dataclass(frozen=True)
class FileProblem:
    """One file of a snapshot that does not match its completion record."""

    model: str
    commit: str
    file: RemoteFile
    problem: str

    def describe(self) -> str:
        return f"{self.model}@{self.commit[:8]}: {self.file.path}: {self.problem}"


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """What was checked and what did not match."""

    records: tuple[CompletionRecord, ...]
    problems: tuple[FileProblem, ...]

    @property
    def files(self) -> int:
        return sum(len(r.files) for r in self.records)

    @property
    def bytes(self) -> int:
        return sum(r.total_bytes for r in self.records)


def records_to_verify(
    settings: Settings, models: Sequence[str] = (), revision: str | None = None
) -> list[CompletionRecord]:
    """The completion records of `models` (all on the volume when empty), optionally of one revision."""
    root = settings.records_dir / "records"
    wanted = list(models) or [m for m in map(model_id_from_folder, _names(root)) if m]
    records: list[CompletionRecord] = []
    for model in wanted:
        folder = root / repo_folder(model)
        found = [r for r in (read_record(p) for p in sorted(folder.glob("*.json"))) if r is not None]
        if revision is not None:
            found = [r for r in found if _matches_revision(settings, r, revision)]
        if not found and models:
            what = f"{model}@{revision}" if revision else model
            raise ModelNotFound(f"{what} has no completion record on the volume; run `volcache fetch {model}` first.")
        records.extend(found)
    return records


def _names(folder: Path) -> list[str]:
    try:
        return sorted(p.name for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []


def _matches_revision(settings: Settings, record: CompletionRecord, revision: str) -> bool:
    if revision in (record.commit, record.revision):
        return True
    return read_ref(settings.hub_cache / repo_folder(record.repo), revision) == record.commit


def verify(
    settings: Settings,
    records: Iterable[CompletionRecord],
    *,
    progress: Progress | None = None,
    on_file: Callable[[CompletionRecord, RemoteFile, str | None], None] | None = None,
) -> VerifyReport:
    """Check every file of every record; `progress(n)` is called as bytes are read."""
    records = tuple(records)
    problems = []
    for record in records:
        snapshot = settings.hub_cache / repo_folder(record.repo) / "snapshots" / record.commit
        for f in record.files:
            problem = check_file(snapshot, f, progress)
            if on_file is not None:
                on_file(record, f, problem)
            if problem is not None:
                problems.append(FileProblem(record.repo, record.commit, f, problem))
    return VerifyReport(records, tuple(problems))


def check_file(snapshot: Path, f: RemoteFile, progress: Progress | None = None) -> str | None:
    """What is wrong with `f` in `snapshot`, or None when it matches the record."""
    path = snapshot / f.path
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing" if not path.is_symlink() else "link points at a missing blob"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    repo = snapshot.parent.parent.resolve()
    if path.is_symlink() and repo not in path.resolve().parents:
        return f"link points outside the repo folder, at {path.resolve()}"
    if size != f.size:
        _advance(progress, f.size)
        return f"{size} bytes on disk, the record says {f.size}"
    return _content_problem(path, f, progress)


def _content_problem(path: Path, f: RemoteFile, progress: Progress | None) -> str | None:
    if f.sha256 is not None:
        digest = _digest(path, hashlib.sha256(), progress)
        want = f.sha256
        kind = "sha256"
    elif _SHA1_RE.match(f.oid):
        digest = _digest(path, git_blob_header(f.size), progress)
        want = f.oid
        kind = "git blob id"
    else:
        _advance(progress, f.size)
        return None
    if digest is None:
        return "unreadable"
    return None if digest == want else f"{kind} {digest[:12]}… does not match the record's {want[:12]}…"


def _digest(path: Path, h: Any, progress: Progress | None) -> str | None:
    try:
        return hash_file(path, h, lambda n: _advance(progress, n))
    except OSError:
        return None


def _advance(progress: Progress | None, n: int) -> None:
    if progress is not None:
        progress(n)


# -- repair ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RepairResult:
    """Files downloaded again, and those still broken after the repair."""

    repaired: tuple[FileProblem, ...]
    failed: tuple[tuple[FileProblem, str], ...]


def repair(settings: Settings, problems: Sequence[FileProblem]) -> RepairResult:
    """Download the broken files again, model by model, under each model's download lease."""
    if settings.offline:
        raise StoreError("HF_HUB_OFFLINE=1 forbids downloading; unset it to repair, or `volcache rm` the model.")
    repaired: list[FileProblem] = []
    failed: list[tuple[FileProblem, str]] = []
    store = ModelStore(settings)
    for model in sorted({p.model for p in problems}):
        mine = [p for p in problems if p.model == model]
        lease = Lease(
            store.lease_path(model),
            timeout=settings.lease_timeout,
            max_wait=settings.lease_max_wait,
            purpose=f"repair {model}",
        )
        with lease:
            for problem in mine:
                try:
                    _repair_file(store, problem)
                except StoreError as exc:
                    failed.append((problem, str(exc)))
                else:
                    repaired.append(problem)
    return RepairResult(tuple(repaired), tuple(failed))


def _repair_file(store: ModelStore, problem: FileProblem) -> None:
    snapshot = store.snapshot_dir(problem.model, problem.commit)
    if check_file(snapshot, problem.file) is None:
        log.info("volcache: %s matches now (its blob was repaired with another file)", problem.describe())
        return
    _remove_broken(store.repo_dir(problem.model), snapshot / problem.file.path, problem.file)
    log.info("volcache: fetching %s of %s@%s again", problem.file.path, problem.model, problem.commit[:8])
    store.fetch_file(problem.model, problem.commit, problem.file)


def _remove_broken(repo: Path, link: Path, f: RemoteFile) -> None:
    """Remove the snapshot entry, and its blob if that is bad (only inside `repo/blobs`, never `.incomplete`).

    A good blob is kept: the store then only links it again, without downloading.
    """
    blobs = real(repo / "blobs")
    targets = {blobs / f.oid}
    if link.is_symlink():
        targets.add(real(link))
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    for blob in targets:
        if blob.parent != blobs or blob.name.endswith(".incomplete") or not blob.exists():
            continue
        if _size_problem(blob, f) or _content_problem(blob, f, None):
            with contextlib.suppress(FileNotFoundError):
                blob.unlink()


def _size_problem(path: Path, f: RemoteFile) -> bool:
    try:
        return path.stat().st_size != f.size
    except OSError:
        return True
