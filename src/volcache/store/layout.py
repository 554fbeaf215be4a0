"""Every path on the volume, in one place: the Hugging Face cache layout and volcache's records beside it.

The hub cache is the real layout that `huggingface_hub`, `hf cache` and transformers know
(`models--org--name/{blobs,snapshots,refs}`); volcache's own files live in `$HF_HOME/.volcache/`
(`records/`, `used/`, `inuse/`, `locks/`). No other module joins these names: a new file on the
volume is a new method here. Only names from volcache's checks reach these methods (model ids
through `check_repo_id`, commits and oids as hex digits), never a header or a job input.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from .._settings import StoreSettings
from .volume import replace_into, retry_io

SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
STAGING_PREFIX = ".staging-"  # a download's private folder inside blobs/: renamed into place, never served


def repo_folder(repo_id: str) -> str:
    """`org/name` -> `models--org--name`, as huggingface_hub names cache folders."""
    return "--".join(["models", *repo_id.split("/")])


def is_cache_blob(path: Path) -> bool:
    """True for a file in a hub cache's `models--*/blobs/` folder (a blob, whatever its name)."""
    return path.parent.name == "blobs" and path.parent.parent.name.startswith("models--")


def model_id_from_folder(name: str) -> str | None:
    """`models--org--name` -> `org/name`; None for folders that are not model repos."""
    if not name.startswith("models--"):
        return None
    return "/".join(name.split("--")[1:])


@dataclasses.dataclass(frozen=True)
class RepoFolder:
    """One `models--org--name` folder of a hub cache (the volume's, or a read-only one)."""

    path: Path

    @property
    def snapshots(self) -> Path:
        return self.path / "snapshots"

    @property
    def blobs(self) -> Path:
        return self.path / "blobs"

    @property
    def refs(self) -> Path:
        return self.path / "refs"

    def snapshot(self, commit: str) -> Path:
        return self.snapshots / commit

    def blob(self, oid: str) -> Path:
        return self.blobs / oid

    def no_exist(self, commit: str) -> Path:
        """huggingface_hub's record of files a commit does not have."""
        return self.path / ".no_exist" / commit

    def staging(self, token: str) -> Path:
        """A download's private folder inside `blobs/`: the one place the Hub client writes."""
        return self.blobs / f"{STAGING_PREFIX}{token}"

    def blob_link(self, commit: str, file_path: str, oid: str) -> tuple[Path, str]:
        """The snapshot entry of `file_path` and the relative target it must point at (`../../blobs/<oid>`)."""
        link = self.snapshot(commit) / file_path
        up = "/".join([".."] * (len(file_path.split("/")) + 1))
        return link, f"{up}/blobs/{oid}"

    def read_ref(self, revision: str) -> str | None:
        """The commit `refs/<revision>` names, or None (missing, unreadable, not a commit id)."""
        try:
            sha = retry_io(lambda: (self.refs / revision).read_text()).strip()
        except OSError:
            return None
        return sha if SHA1_RE.match(sha) else None

    def read_refs(self) -> dict[str, str]:
        """Every ref of the repo: name -> commit (unreadable refs are left out)."""
        if not self.refs.is_dir():
            return {}
        refs = {}
        for ref in self.refs.rglob("*"):
            if ref.is_file() and not ref.name.startswith("."):
                sha = self.read_ref(str(ref.relative_to(self.refs)))
                if sha is not None:
                    refs[str(ref.relative_to(self.refs))] = sha
        return refs

    def ref_paths(self, names: tuple[str, ...]) -> tuple[Path, ...]:
        return tuple(self.refs / n for n in names)

    def write_ref(self, revision: str, commit: str) -> None:
        """Point `refs/<revision>` at `commit` atomically (a reader sees the old or the new commit)."""
        if self.read_ref(revision) == commit:
            return
        ref = self.refs / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        replace_into(ref, lambda tmp: tmp.write_text(commit))

    def folders_to_tidy(self) -> tuple[Path, ...]:
        """The repo's folders, innermost first: removed by prune when they end up empty."""
        nested: tuple[Path, ...] = ()
        if self.refs.is_dir():
            nested = tuple(sorted((p for p in self.refs.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)))
        return (*nested, self.refs, self.snapshots, self.path / ".no_exist", self.blobs, self.path)


@dataclasses.dataclass(frozen=True)
class VolumeLayout:
    """Where everything lives on the volume: the hub cache and volcache's records beside it."""

    hub_cache: Path
    records_dir: Path

    @classmethod
    def of(cls, settings: StoreSettings) -> VolumeLayout:
        return cls(settings.hub_cache, settings.records_dir)

    # -- the hub cache --
    def repo(self, model: str) -> RepoFolder:
        return RepoFolder(self.hub_cache / repo_folder(model))

    def repos(self) -> list[tuple[str, RepoFolder]]:
        """Every model repo folder in the hub cache, by model id (symlinked repo folders are left out)."""
        try:
            entries = sorted(self.hub_cache.iterdir())
        except OSError:
            return []
        found = []
        for entry in entries:
            model = model_id_from_folder(entry.name)
            if model is not None and not entry.is_symlink():
                found.append((model, RepoFolder(entry)))
        return found

    def snapshot(self, model: str, commit: str) -> Path:
        return self.repo(model).snapshot(commit)

    # -- volcache's records --
    @property
    def records_root(self) -> Path:
        return self.records_dir / "records"

    def records_folder(self, model: str) -> Path:
        return self.records_root / repo_folder(model)

    def record(self, model: str, commit: str, selection_key: str = "") -> Path:
        """The completion record of `model@commit` for one selection (`Selection.key`; "" is the default)."""
        name = f"{commit}.sel-{selection_key}.json" if selection_key else f"{commit}.json"
        return self.records_folder(model) / name

    def commit_records(self, model: str, commit: str) -> list[Path]:
        """The records of `model@commit` that exist, one per selection, the default first."""
        default = self.record(model, commit)
        try:
            others = sorted(self.records_folder(model).glob(f"{commit}.sel-*.json"))
        except OSError:
            others = []
        return [default, *others] if default.exists() else others

    def record_models(self) -> list[str]:
        """Models that have a records folder."""
        try:
            names = sorted(p.name for p in self.records_root.iterdir() if p.is_dir())
        except OSError:
            return []
        return [m for m in map(model_id_from_folder, names) if m]

    def used_marker(self, model: str, commit: str) -> Path:
        """The file a worker touches when it loads `model@commit`; its mtime orders `volcache prune`."""
        return self.records_dir / "used" / repo_folder(model) / commit

    def inuse_dir(self, model: str, commit: str) -> Path:
        """The folder of the in-use markers of one snapshot."""
        return self.records_dir / "inuse" / repo_folder(model) / commit

    @property
    def locks_dir(self) -> Path:
        return self.records_dir / "locks"

    def lease(self, model: str) -> Path:
        """The download lease of a model: held while its files are written or removed."""
        return self.locks_dir / f"{repo_folder(model)}.lease"

    def clock_probe(self, token: str) -> Path:
        """A scratch file touched to read the volume's clock (its mtime) at this moment."""
        return self.records_dir / f".clock-{token}"

    def record_folders_to_tidy(self, model: str) -> tuple[Path, ...]:
        """volcache's per-model folders, removed by prune when they end up empty."""
        folder = repo_folder(model)
        return (self.records_folder(model), self.records_dir / "used" / folder, self.records_dir / "inuse" / folder)

    def snapshot_records(self, model: str, commit: str) -> tuple[Path, ...]:
        """Everything volcache keeps about one snapshot: its records, last-use marker and in-use folder."""
        records = {self.record(model, commit), *self.commit_records(model, commit)}
        return (*sorted(records), self.used_marker(model, commit), self.inuse_dir(model, commit))
