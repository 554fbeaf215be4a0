"""`volcache verify`: re-hash snapshots against their completion records, and repair broken files.

Every file is checked for presence and size; LFS files for their sha256 and regular files for
their git blob id, both as the record lists them. Repair works under the model's download lease:
it removes only the broken blob and its links, then downloads those files again through the
store, so the record (which states what the files must be) is never rewritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .._errors import ModelNotFound, StoreError
from .._settings import StoreSettings
from ..store import (
    CompletionRecord,
    Lease,
    ModelStore,
    RemoteFile,
    RepoFolder,
    VolumeLayout,
    recorded_models,
    records_of,
)
from ..store.integrity import Progress, check_file, content_problem

log = logging.getLogger("volcache.verify")


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
    settings: StoreSettings, models: Sequence[str] = (), revision: str | None = None
) -> list[CompletionRecord]:
    """The completion records of `models` (all on the volume when empty), optionally of one revision."""
    records: list[CompletionRecord] = []
    for model in list(models) or recorded_models(settings):
        found = sorted(records_of(settings, model), key=lambda r: r.commit)
        if revision is not None:
            found = [r for r in found if _matches_revision(settings, r, revision)]
        if not found and models:
            what = f"{model}@{revision}" if revision else model
            raise ModelNotFound(
                f"{what} has no completion record on the volume; run `volcache fetch {model}` first.", model=model
            )
        records.extend(found)
    return records


def _matches_revision(settings: StoreSettings, record: CompletionRecord, revision: str) -> bool:
    if revision in (record.commit, record.revision):
        return True
    return VolumeLayout.of(settings).repo(record.repo).read_ref(revision) == record.commit


def verify(
    settings: StoreSettings,
    records: Iterable[CompletionRecord],
    *,
    progress: Progress | None = None,
    on_file: Callable[[CompletionRecord, RemoteFile, str | None], None] | None = None,
) -> VerifyReport:
    """Check every file of every record; `progress(n)` is called as bytes are read."""
    records = tuple(records)
    problems = []
    for record in records:
        layout = VolumeLayout.of(settings)
        snapshot = layout.snapshot(record.repo, record.commit)
        for f in record.files:
            repo = layout.repo(record.repo).path
            problem = check_file(snapshot / f.path, f, progress, inside=repo, source="the record's")
            if on_file is not None:
                on_file(record, f, problem)
            if problem is not None:
                problems.append(FileProblem(record.repo, record.commit, f, problem))
    return VerifyReport(records, tuple(problems))


# -- repair ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RepairResult:
    """Files downloaded again, and those still broken after the repair."""

    repaired: tuple[FileProblem, ...]
    failed: tuple[tuple[FileProblem, str], ...]


def repair(settings: StoreSettings, problems: Sequence[FileProblem]) -> RepairResult:
    """Download the broken files again, model by model, under each model's download lease."""
    if settings.offline:
        raise StoreError("HF_HUB_OFFLINE=1 forbids downloading; unset it to repair, or `volcache rm` the model.")
    repaired: list[FileProblem] = []
    failed: list[tuple[FileProblem, str]] = []
    store = ModelStore(settings)
    for model in sorted({p.model for p in problems}):
        mine = [p for p in problems if p.model == model]
        with store.lease(model, f"repair {model}") as lease:
            for problem in mine:
                try:
                    _repair_file(store, problem, lease)
                except StoreError as exc:
                    failed.append((problem, str(exc)))
                else:
                    repaired.append(problem)
    return RepairResult(tuple(repaired), tuple(failed))


def _repair_file(store: ModelStore, problem: FileProblem, lease: Lease) -> None:
    snapshot = store.snapshot_dir(problem.model, problem.commit)
    if check_file(snapshot / problem.file.path, problem.file) is None:
        log.info("volcache: %s matches now (its blob was repaired with another file)", problem.describe())
        return
    _remove_broken(store.layout.repo(problem.model), snapshot / problem.file.path, problem.file)
    log.info("volcache: fetching %s of %s@%s again", problem.file.path, problem.model, problem.commit[:8])
    store.fetch_file(problem.model, problem.commit, problem.file, lease)


def _remove_broken(repo: RepoFolder, link: Path, f: RemoteFile) -> None:
    """Remove the snapshot entry, and its blob if that is bad (only inside `repo/blobs`, never `.incomplete`).

    A good blob is kept: the store then only links it again, without downloading.
    """
    blobs = Path(os.path.realpath(repo.blobs))
    targets = {blobs / f.oid}
    if link.is_symlink():
        targets.add(Path(os.path.realpath(link)))
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    for blob in targets:
        if blob.parent != blobs or blob.name.endswith(".incomplete") or not blob.exists():
            continue
        if _size_problem(blob, f) or content_problem(blob, f):
            with contextlib.suppress(FileNotFoundError):
                blob.unlink()


def _size_problem(path: Path, f: RemoteFile) -> bool:
    try:
        return path.stat().st_size != f.size
    except OSError:
        return True
