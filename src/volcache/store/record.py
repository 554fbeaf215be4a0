"""The completion record: the one proof that a snapshot on the volume is whole (I2).

A record is written atomically (temp file, fsync, rename) only after every file was
downloaded and verified. It lives beside the Hub layout (`VolumeLayout.record`), so `hf cache`
and transformers see the ordinary layout. A record holds one selection (`Selection`: variant,
file pattern, includes): two variants of one commit share the snapshot folder and its blobs,
and each has its own record (`VolumeLayout.record(model, commit, selection.key)`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from .selection import RemoteFile, Selection
from .volume import retry_io

RECORD_VERSION = 1
DEFAULT_SELECTION = Selection()


@dataclasses.dataclass(frozen=True)
class CompletionRecord:
    """A verified, complete snapshot of `repo` at `commit`."""

    repo: str
    commit: str
    revision: str
    files: tuple[RemoteFile, ...]
    completed_at: float
    host: str
    selection: Selection = DEFAULT_SELECTION

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["selection"] = self.selection.to_json()
        data["version"] = RECORD_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CompletionRecord:
        files = tuple(RemoteFile(str(f["path"]), int(f["size"]), f.get("sha256"), str(f["oid"])) for f in data["files"])
        return cls(
            str(data["repo"]),
            str(data["commit"]),
            str(data["revision"]),
            files,
            float(data["completed_at"]),
            str(data.get("host", "")),
            Selection.from_json(data.get("selection")),  # records before selections: the default
        )

    @classmethod
    def new(
        cls, repo: str, commit: str, revision: str, files: list[RemoteFile], selection: Selection = DEFAULT_SELECTION
    ) -> CompletionRecord:
        return cls(
            repo,
            commit,
            revision,
            tuple(sorted(files, key=lambda f: f.path)),
            time.time(),
            socket.gethostname(),
            selection,
        )


def read_record(path: Path) -> CompletionRecord | None:
    """The record at `path`, or None if it is missing or unreadable (never half-written).

    A transient I/O error is retried first: a healthy record must not read as "absent".
    """
    try:
        return CompletionRecord.from_json(json.loads(retry_io(path.read_text)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(path: Path, record: CompletionRecord) -> None:
    """Write atomically: a reader sees the old state or the whole record, nothing between."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(record.to_json(), f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # e.g. the volume is full: leave no half-written temp file behind
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def snapshot_mismatches(snapshot: Path, record: CompletionRecord) -> list[str]:
    """Files of the record that are missing from the snapshot or have another size (stat only)."""
    problems = []
    for f in record.files:
        try:
            size = retry_io((snapshot / f.path).stat).st_size
        except OSError:
            problems.append(f"{f.path}: missing")
            continue
        if size != f.size:
            problems.append(f"{f.path}: {size} bytes on disk, {f.size} expected")
    return problems
