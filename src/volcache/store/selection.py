"""Which files of a repository the loader will open (the plan behind every download), and
which listed paths are safe to write.

Pure logic, no I/O. Input: the repo listing with sizes, the contents of the few small files
that decide (`model_index.json`, `modules.json`, `*.safetensors.index.json`), and the request
(`MODEL_VARIANT`, `MODEL_FILE`, `VOLCACHE_INCLUDE`). Output: a `Plan` with every file kept or
skipped, the reason in a few words, and the totals. The rules follow the loaders:

- transformers (`get_checkpoint_shard_files`) and vLLM (`filter_duplicate_safetensors_files`):
  with an index, exactly the shards it names; `model.safetensors` before `pytorch_model.bin`;
  `consolidated*.safetensors`, `original/` and pickles are duplicates beside a safetensors set;
- sentence-transformers: only the module folders `modules.json` names;
- diffusers (`variant_compatible_siblings`, `_get_ignore_patterns`): only the components
  `model_index.json` names; per component the variant's files where it has them, its plain
  files where it has none; root single-file checkpoints and LoRAs are not part of the pipeline;
- GGUF: one quantization, chosen with `MODEL_FILE`, with every part of a split file.

Paths come only from the checked listing: a deciding file's contents can select listed files,
never name a new one (I8).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any, Literal, Protocol

from .._errors import HostileAnswer, InvalidModelId, SelectionError
from .layout import SHA1_RE as _SHA_RE

Layout = Literal["transformers", "sentence-transformers", "diffusers", "gguf", "explicit"]

WEIGHT_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".onnx_data",
    ".h5", ".msgpack", ".ot", ".tflite", ".mlmodel", ".pb", ".npz", ".nemo", ".keras",
)  # fmt: skip
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
MAX_DECIDING_BYTES = 64 * 1024**2  # an index of a 1 TB model is a few MB; more is not an index

# Formats a PyTorch loader never opens, by pattern, with the words a plan shows.
_OTHER_RUNTIMES: tuple[tuple[str, str], ...] = (
    ("onnx/*", "onnx export"), ("*.onnx", "onnx export"), ("*.onnx_data", "onnx export"),
    ("openvino/*", "openvino export"), ("coreml/*", "Core ML export"), ("*.mlmodel", "Core ML export"),
    ("*.mlpackage/*", "Core ML export"), ("*.gguf", "GGUF (llama.cpp) weights"), ("*.ggml", "GGML weights"),
    ("*.h5", "TensorFlow weights"), ("tf_model*", "TensorFlow weights"), ("*.keras", "TensorFlow weights"),
    ("*.pb", "TensorFlow weights"), ("*.tflite", "TensorFlow Lite weights"), ("*.msgpack", "Flax weights"),
    ("flax_model*", "Flax weights"), ("*.ot", "Rust (tch) weights"),
)  # fmt: skip
_NEVER_NEEDED = (".gitattributes",)
_STANDARD_STEMS = ("model", "pytorch_model", "diffusion_pytorch_model")
_SHARD_RE = re.compile(r"-(\d{5})-of-(\d{5})")
# `model.safetensors.index.json`, `x.safetensors.index.fp16.json`, the legacy `x.bin.fp16.index.json`
_INDEX_RE = re.compile(
    r"^(?P<stem>[^.]+)\.(?P<fmt>safetensors|bin)(?:\.(?P<legacy>[A-Za-z][A-Za-z0-9_]*))?\.index"
    r"(?:\.(?P<variant>[A-Za-z][A-Za-z0-9_]*))?\.json$"
)
_QUANT_RE = re.compile(r"(?i)(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|BF16|F16|F32)(?=[-_.])")
_VARIANT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")  # `fp16`, `bf16`, `non_ema`; never `0` of `v1.0`


MAX_FILE_SIZE = 2 * 1000**4  # 2 TB: anything larger in a listing is an error, not a model
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file of a repository at a commit, as the Hub lists it."""

    path: str
    size: int
    sha256: str | None  # set for LFS files: the blob is named by it and must hash to it
    oid: str  # git blob id for regular files, sha256 for LFS files: the blob's file name


def check_repo_id(repo_id: str) -> str:
    """Refuse repo ids that are not `name` or `org/name` before they reach a path."""
    if not _REPO_ID_RE.match(repo_id) or ".." in repo_id:
        raise InvalidModelId(
            f"{repo_id!r} is not a Hugging Face model id; use the form org/name, "
            "e.g. sentence-transformers/all-MiniLM-L6-v2.",
            model=repo_id,
        )
    return repo_id


def check_commit(sha: str) -> str:
    if not isinstance(sha, str) or not _SHA_RE.match(sha):
        raise HostileAnswer(f"the Hub returned {sha!r} as a commit id; expected 40 hex digits.")
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
            raise HostileAnswer(f"the Hub listed the unsafe path {f.path!r}; refusing to download this model.")
        if not 0 <= f.size <= MAX_FILE_SIZE:
            raise HostileAnswer(f"the Hub listed {f.path!r} with an impossible size of {f.size} bytes.")
        if f.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", f.sha256):
            raise HostileAnswer(f"the Hub listed {f.path!r} with a malformed sha256 {f.sha256!r}.")
        if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", f.oid):
            raise HostileAnswer(f"the Hub listed {f.path!r} with a malformed blob id {f.oid!r}.")
        checked.append(f)
    return checked


class _File(Protocol):
    """A listed file: anything with a `path` and a `size` (a `RemoteFile`)."""

    @property
    def path(self) -> str: ...

    @property
    def size(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class Selection:
    """What a request asks for beyond the model and revision; a completion record holds one."""

    variant: str | None = None  # MODEL_VARIANT, e.g. "fp16"
    file: str | None = None  # MODEL_FILE, a glob on the repo path, e.g. "*Q4_K_M.gguf"
    include: tuple[str, ...] = ()  # VOLCACHE_INCLUDE patterns, always downloaded

    def __post_init__(self) -> None:
        if self.variant is not None and not _VARIANT_RE.match(self.variant):
            raise SelectionError(f"MODEL_VARIANT={self.variant!r} is not a variant name; use e.g. fp16 or bf16.")

    @property
    def is_default(self) -> bool:
        return self == Selection()

    @property
    def key(self) -> str:
        """A short stable name for file names: empty for the default selection."""
        if self.is_default:
            return ""
        canonical = json.dumps(self.to_json(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """How `ls` and `--plan` show it: `default`, `fp16`, `file=*Q4_K_M.gguf`, ..."""
        parts = [self.variant] if self.variant else []
        parts += [f"file={self.file}"] if self.file else []
        parts += [f"include={','.join(self.include)}"] if self.include else []
        return " ".join(p for p in parts if p) or "default"

    def to_json(self) -> dict[str, Any]:
        return {"variant": self.variant, "file": self.file, "include": list(self.include)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Selection:
        if not data:
            return cls()
        include = tuple(str(p) for p in data.get("include") or ())
        return cls(data.get("variant") or None, data.get("file") or None, include)


@dataclasses.dataclass(frozen=True)
class PlannedFile:
    """One listed file and the plan's verdict on it."""

    path: str
    size: int
    keep: bool
    reason: str

    @property
    def is_weight(self) -> bool:
        return is_weight_file(self.path)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every file of the repo at one commit, kept or skipped, with the reason and the totals."""

    layout: Layout
    selection: Selection
    files: tuple[PlannedFile, ...]
    model: str = ""
    commit: str = ""

    @property
    def kept(self) -> tuple[PlannedFile, ...]:
        return tuple(f for f in self.files if f.keep)

    @property
    def kept_paths(self) -> frozenset[str]:
        return frozenset(f.path for f in self.kept)

    @property
    def kept_bytes(self) -> int:
        return sum(f.size for f in self.kept)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def kept_weight_bytes(self) -> int:
        return sum(f.size for f in self.kept if f.is_weight)

    @property
    def total_weight_bytes(self) -> int:
        return sum(f.size for f in self.files if f.is_weight)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "commit": self.commit,
            "layout": self.layout,
            "selection": self.selection.to_json(),
            "files": [dataclasses.asdict(f) for f in self.files],
            "kept_files": len(self.kept),
            "kept_bytes": self.kept_bytes,
            "total_files": len(self.files),
            "total_bytes": self.total_bytes,
            "kept_weight_bytes": self.kept_weight_bytes,
            "total_weight_bytes": self.total_weight_bytes,
        }


def is_weight_file(name: str) -> bool:
    return name.lower().endswith(WEIGHT_SUFFIXES)


def matches(path: str, patterns: Iterable[str]) -> bool:
    """fnmatch on the whole repo path or on the file name, as VOLCACHE_INCLUDE documents."""
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


# -- the files that decide --------------------------------------------------------------------------
def deciding_files(listing: Sequence[_File], contents: Mapping[str, bytes], selection: Selection) -> list[str]:
    """The small files whose contents the plan still needs, given those already read.

    Call until it returns nothing: the root files first (`model_index.json`, `modules.json`),
    then only the indexes of the folders, formats and variant those make relevant.
    """
    paths = {f.path for f in listing}
    roots: list[str] = [p for p in ("model_index.json", "modules.json") if p in paths and p not in contents]
    if roots and selection.file is None:
        return roots
    folders = _considered_folders(listing, contents, selection)
    wanted = []
    for f in listing:
        folder, name = _split(f.path)
        match = _INDEX_RE.match(name)
        if match is None or folder not in folders or f.path in contents:
            continue
        if _index_variant(match) not in (None, selection.variant) and selection.file is None:
            continue
        if match["fmt"] == "bin" and _has_suffix(listing, folder, ".safetensors") and selection.file is None:
            continue
        wanted.append(f.path)
    return sorted(wanted)


def _considered_folders(listing: Sequence[_File], contents: Mapping[str, bytes], selection: Selection) -> set[str]:
    all_folders = {_split(f.path)[0] for f in listing}
    if selection.file is not None:
        return {_split(f.path)[0] for f in listing if is_weight_file(f.path) and _file_matches(f.path, selection.file)}
    if "model_index.json" in contents:
        return set(_diffusers_components(contents["model_index.json"]))
    if "modules.json" in contents:
        return set(_st_modules(contents["modules.json"]))
    return all_folders


# -- the plan ---------------------------------------------------------------------------------------
def plan_selection(
    listing: Sequence[_File],
    contents: Mapping[str, bytes],
    selection: Selection,
    *,
    model: str = "the model",
    commit: str = "",
) -> Plan:
    """Decide every listed file. `contents` must hold what `deciding_files` asked for."""
    missing = deciding_files(listing, contents, selection)
    if missing:
        raise ValueError(f"the plan needs the contents of {', '.join(missing)} first")
    layout, verdicts = _decide(listing, contents, selection, model)
    files = []
    for f in sorted(listing, key=lambda f: f.path):
        keep, reason = verdicts[f.path]
        if matches(f.path, selection.include) and not keep:
            keep, reason = True, "VOLCACHE_INCLUDE"
        files.append(PlannedFile(f.path, f.size, keep, reason))
    plan = Plan(layout, selection, tuple(files), model, commit)
    if not any(f.is_weight for f in plan.kept):
        raise SelectionError(
            f"{model}: no weight file a loader can open was selected ({len(listing)} files listed, layout "
            f"{layout}). Fix: check MODEL_NAME and MODEL_REVISION, choose weights with MODEL_FILE, or add "
            "the formats you need to VOLCACHE_INCLUDE."
        )
    return plan


Verdicts = dict[str, tuple[bool, str]]


def _decide(
    listing: Sequence[_File], contents: Mapping[str, bytes], selection: Selection, model: str
) -> tuple[Layout, Verdicts]:
    if selection.file is not None:
        return "explicit", _decide_explicit(listing, contents, selection, model)
    if "model_index.json" in contents:
        return "diffusers", _decide_diffusers(listing, contents, selection, model)
    if "modules.json" in contents:
        return "sentence-transformers", _decide_modules(listing, contents, selection, model)
    verdicts = _decide_transformers(listing, contents, selection, model)
    if not any(keep and is_weight_file(p) for p, (keep, _) in verdicts.items()):
        gguf = _gguf_groups(listing)
        included = {
            name: parts for name, parts in gguf.items() if any(matches(p.path, selection.include) for p in parts)
        }
        if gguf:
            return "gguf", _decide_gguf(listing, included or gguf, model)
    return "transformers", verdicts


def _decide_transformers(
    listing: Sequence[_File], contents: Mapping[str, bytes], selection: Selection, model: str
) -> Verdicts:
    """Root weights when the root has a loadable set (what from_pretrained reads); else each folder's."""
    by_folder = _by_folder(listing)
    root = _choose_in_folder(by_folder.get("", []), contents, selection, model, prefer_index=False)
    root_loads = any(keep and is_weight_file(p) for p, (keep, _) in root.items())
    verdicts: Verdicts = dict(root)
    for folder, files in by_folder.items():
        if folder == "":
            continue
        if root_loads and folder.split("/", 1)[0] == "original":
            verdicts.update({f.path: (False, "original-format duplicate") for f in files})
        elif root_loads:
            verdicts.update(_outside_loaded_folders(files, "not read: the root holds the weights"))
        else:
            verdicts.update(_choose_in_folder(files, contents, selection, model, prefer_index=False))
    return verdicts


def _decide_modules(
    listing: Sequence[_File], contents: Mapping[str, bytes], selection: Selection, model: str
) -> Verdicts:
    """sentence-transformers: the module folders of `modules.json`, each with the transformers rules."""
    modules = set(_st_modules(contents["modules.json"]))
    verdicts: Verdicts = {}
    for folder, files in _by_folder(listing).items():
        if folder in modules:
            verdicts.update(_choose_in_folder(files, contents, selection, model, prefer_index=False))
        elif folder == "":
            verdicts.update(_outside_loaded_folders(files, "weights outside the modules"))
        else:
            verdicts.update({f.path: (False, _other_runtime(f.path) or "not a module in modules.json") for f in files})
    return verdicts


def _decide_diffusers(
    listing: Sequence[_File], contents: Mapping[str, bytes], selection: Selection, model: str
) -> Verdicts:
    """The components of `model_index.json`, each with its variant; nothing else is the pipeline."""
    components = set(_diffusers_components(contents["model_index.json"]))
    verdicts: Verdicts = {}
    for folder, files in _by_folder(listing).items():
        top = folder.split("/", 1)[0]
        if folder in components:
            verdicts.update(_choose_in_folder(files, contents, selection, model, prefer_index=True))
        elif folder == "":
            verdicts.update(_outside_loaded_folders(files, "root checkpoint or LoRA beside the diffusers layout"))
        elif top in components:
            verdicts.update(_outside_loaded_folders(files, "not read: nested in a component"))
        else:
            verdicts.update(
                {f.path: (False, _other_runtime(f.path) or "not a component in model_index.json") for f in files}
            )
    return verdicts


def _decide_explicit(
    listing: Sequence[_File], contents: Mapping[str, bytes], selection: Selection, model: str
) -> Verdicts:
    """MODEL_FILE picks the weights (every part of a split file); configs and code still follow."""
    assert selection.file is not None
    pattern = selection.file
    chosen = {f.path for f in listing if is_weight_file(f.path) and _file_matches(f.path, pattern)}
    if not chosen:
        raise SelectionError(
            f"{model}: MODEL_FILE={pattern!r} matches no weight file; the choices: {_choices(listing)}."
        )
    verdicts: Verdicts = {}
    for f in listing:
        name = _split(f.path)[1]
        if f.path in chosen:
            verdicts[f.path] = (True, "MODEL_FILE")
        elif is_weight_file(f.path):
            verdicts[f.path] = (False, "not MODEL_FILE")
        elif _INDEX_RE.match(name):
            shards = set(_index_shards(f.path, contents.get(f.path), model))
            verdicts[f.path] = (True, "index of MODEL_FILE") if shards <= chosen else (False, "index of other weights")
        else:
            verdicts[f.path] = _small_file_verdict(f.path)
    return verdicts


def _decide_gguf(listing: Sequence[_File], groups: dict[str, list[_File]], model: str) -> Verdicts:
    """A GGUF-only repo: one quantization is one deployment; without MODEL_FILE, say the choices."""
    if len(groups) > 1:
        raise SelectionError(
            f"{model} holds only GGUF weights in {len(groups)} quantizations; choose one with MODEL_FILE "
            f"(or `volcache fetch --file`): {_choices(listing)}."
        )
    (only,) = groups.values()
    kept = {f.path for f in only}
    verdicts: Verdicts = {}
    for f in listing:
        if f.path in kept:
            verdicts[f.path] = (True, "the only GGUF file")
        elif is_weight_file(f.path):
            verdicts[f.path] = (False, "not GGUF")
        else:
            verdicts[f.path] = _small_file_verdict(f.path)
    return verdicts


# -- one folder -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _WeightSet:
    """Files the loader opens together: one checkpoint file, or the shards an index names."""

    stem: str
    fmt: str  # "safetensors" or "pickle"
    variant: str | None
    files: frozenset[str]
    index: str | None = None


def _choose_in_folder(
    files: Sequence[_File], contents: Mapping[str, bytes], selection: Selection, model: str, *, prefer_index: bool
) -> Verdicts:
    """The one weight set a loader opens in this folder, and why every other file is not read."""
    verdicts: Verdicts = {}
    for f in files:
        verdicts[f.path] = _small_file_verdict(f.path)
    sets = _weight_sets(files, contents, model)
    chosen, why_not = _pick_set(sets, selection.variant, prefer_index)
    for f in files:
        if not is_weight_file(f.path) and not _INDEX_RE.match(_split(f.path)[1]):
            continue
        runtime = _other_runtime(f.path)
        in_chosen = chosen is not None and (f.path in chosen.files or f.path == chosen.index)
        if in_chosen:
            verdicts[f.path] = (True, "index" if chosen and f.path == chosen.index else "weights the loader opens")
        elif runtime is not None:
            verdicts[f.path] = (False, runtime)
        else:
            verdicts[f.path] = (False, why_not(f.path))
    return verdicts


def _weight_sets(files: Sequence[_File], contents: Mapping[str, bytes], model: str) -> list[_WeightSet]:
    listed = {f.path for f in files}
    sets: list[_WeightSet] = []
    indexed: set[str] = set()
    for f in files:
        match = _INDEX_RE.match(_split(f.path)[1])
        if match is None or f.path not in contents:
            continue
        shards = frozenset(_index_shards(f.path, contents[f.path], model))
        absent = sorted(shards - listed)
        if absent:
            raise SelectionError(f"{model}: {f.path} names {absent[0]}, which the repo does not list.")
        fmt = "safetensors" if match["fmt"] == "safetensors" else "pickle"
        sets.append(_WeightSet(match["stem"], fmt, _index_variant(match), shards, f.path))
        indexed |= shards
    groups: dict[tuple[str, str, str | None], set[str]] = {}
    for f in files:
        torch_fmt = _torch_format(f.path)
        if torch_fmt is None or f.path in indexed:
            continue
        stem, variant = _stem_and_variant(_split(f.path)[1])
        groups.setdefault((stem, torch_fmt, variant), set()).add(f.path)
    sets.extend(_WeightSet(stem, fmt, variant, frozenset(p)) for (stem, fmt, variant), p in groups.items())
    return sets


def _pick_set(
    sets: list[_WeightSet], variant: str | None, prefer_index: bool
) -> tuple[_WeightSet | None, Callable[[str], str]]:
    """The loader's order: safetensors over pickles, the variant over plain, standard names, then the index."""
    fmt = "safetensors" if any(s.fmt == "safetensors" for s in sets) else "pickle"
    same_fmt = [s for s in sets if s.fmt == fmt]
    with_variant = [s for s in same_fmt if variant is not None and s.variant == variant]
    candidates = with_variant or [s for s in same_fmt if s.variant is None]
    pool = [s for s in candidates if not s.stem.startswith("consolidated")] or candidates
    chosen = _by_loader_order(pool, prefer_index)
    chosen_variant = chosen.variant if chosen else None

    def why_not(path: str) -> str:
        owner = next((s for s in sets if path in s.files or path == s.index), None)
        index = _INDEX_RE.match(_split(path)[1])
        if owner is None and index is not None:
            if index["fmt"] == "bin" and fmt == "safetensors":
                return "index of the pickled duplicate"
            if _index_variant(index) != chosen_variant:
                return f"index of variant {_index_variant(index) or 'plain'}, not chosen"
        if owner is None:
            return "not read by the loader"
        if owner.fmt != fmt:
            return "pickled duplicate of the safetensors"
        if owner.variant != chosen_variant:
            if owner.variant is None:
                return f"plain weights; variant {chosen_variant} chosen"
            return f"variant {owner.variant}, not asked for" if variant != owner.variant else "variant not chosen"
        if owner.stem.startswith("consolidated"):
            return "consolidated duplicate"
        if chosen is not None and owner.index is None and chosen.index is not None:
            return f"not named by {_split(chosen.index)[1]}"
        return "duplicate of the chosen weights"

    return chosen, why_not


def _by_loader_order(pool: list[_WeightSet], prefer_index: bool) -> _WeightSet | None:
    """An index names the set (vLLM drops the safetensors it does not name); transformers reads
    `model.safetensors` before an index, diffusers the index first. Without an index, every
    checkpoint of the folder: vLLM loads each `*.safetensors` it finds."""

    def stem_rank(s: _WeightSet) -> int:
        return _STANDARD_STEMS.index(s.stem) if s.stem in _STANDARD_STEMS else len(_STANDARD_STEMS)

    indexed = sorted((s for s in pool if s.index), key=stem_rank)
    singles = [s for s in pool if not s.index]
    standard_single = sorted((s for s in singles if s.stem in _STANDARD_STEMS), key=stem_rank)
    if indexed and (prefer_index or not standard_single):
        return indexed[0]
    if indexed:
        return standard_single[0]
    if len(singles) <= 1:
        return singles[0] if singles else None
    return _WeightSet("*", singles[0].fmt, singles[0].variant, frozenset().union(*(s.files for s in singles)))


def _outside_loaded_folders(files: Sequence[_File], reason: str) -> Verdicts:
    """Weights in a folder the loader does not read are skipped; the small files stay."""
    verdicts: Verdicts = {}
    for f in files:
        runtime = _other_runtime(f.path)
        if is_weight_file(f.path) or _INDEX_RE.match(_split(f.path)[1]):
            verdicts[f.path] = (False, runtime or reason)
        else:
            verdicts[f.path] = _small_file_verdict(f.path)
    return verdicts


def _small_file_verdict(path: str) -> tuple[bool, str]:
    if path in _NEVER_NEEDED:
        return False, "git metadata"
    runtime = _other_runtime(path)
    if runtime is not None:
        return False, runtime
    return True, "config, tokenizer or code"


# -- names ------------------------------------------------------------------------------------------
def _split(path: str) -> tuple[str, str]:
    folder, _, name = path.rpartition("/")
    return folder, name


def _by_folder(listing: Sequence[_File]) -> dict[str, list[_File]]:
    folders: dict[str, list[_File]] = {}
    for f in listing:
        folders.setdefault(_split(f.path)[0], []).append(f)
    return folders


def _has_suffix(listing: Sequence[_File], folder: str, suffix: str) -> bool:
    return any(_split(f.path)[0] == folder and f.path.endswith(suffix) for f in listing)


def _torch_format(path: str) -> str | None:
    if _other_runtime(path) is not None:
        return None
    if path.endswith(".safetensors"):
        return "safetensors"
    if path.lower().endswith(_PICKLE_SUFFIXES):
        return "pickle"
    return None


def _other_runtime(path: str) -> str | None:
    return next((why for pattern, why in _OTHER_RUNTIMES if matches(path, [pattern])), None)


def _stem_and_variant(name: str) -> tuple[str, str | None]:
    """`model.fp16.safetensors`, `model.fp16-00001-of-00002.safetensors` and the legacy
    `model-00001-of-00002.fp16.safetensors` -> ("model", "fp16"); the shard number is dropped."""
    base = _SHARD_RE.sub("", name.rsplit(".", 1)[0])
    stem, dot, variant = base.partition(".")
    return (stem, variant) if dot and _VARIANT_RE.match(variant) else (base, None)


def _index_variant(match: re.Match[str]) -> str | None:
    return match["variant"] or match["legacy"]


def _index_shards(index_path: str, data: bytes | None, model: str) -> list[str]:
    """The listed paths an index's `weight_map` names, relative to the index's folder."""
    if data is None:
        raise ValueError(f"the plan needs the contents of {index_path} first")
    weight_map = _json_object(index_path, data, model).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise SelectionError(f"{model}: {index_path} has no weight_map of file names; the loader could not read it.")
    folder = _split(index_path)[0]
    names = sorted(set(weight_map.values()))
    bad = [n for n in names if "/" in n or n in ("", ".", "..")]
    if bad:
        raise SelectionError(f"{model}: {index_path} names {bad[0]!r}, not a file beside the index.")
    return [f"{folder}/{n}" if folder else n for n in names]


def _diffusers_components(data: bytes) -> list[str]:
    """The folders `model_index.json` names: `"unet": ["diffusers", "UNet2DConditionModel"]`."""
    index = _json_object("model_index.json", data, "the model")
    return sorted(
        name
        for name, value in index.items()
        if not name.startswith("_")
        and isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, str) for v in value)
        and "/" not in name
    )


def _st_modules(data: bytes) -> list[str]:
    """The folders `modules.json` names (`""` is the root, where the Transformer module usually is)."""
    try:
        modules = json.loads(data)
    except ValueError:
        raise SelectionError("modules.json is not valid JSON; sentence-transformers could not read it.") from None
    if not isinstance(modules, list):
        raise SelectionError("modules.json is not a list of modules; sentence-transformers could not read it.")
    paths = [str(m.get("path", "")).strip("/") for m in modules if isinstance(m, dict)]
    return sorted(set(paths))


def _json_object(path: str, data: bytes, model: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise SelectionError(f"{model}: {path} is not valid JSON; the loader could not read it.") from None
    if not isinstance(value, dict):
        raise SelectionError(f"{model}: {path} is not a JSON object; the loader could not read it.")
    return value


# -- GGUF and MODEL_FILE choices ------------------------------------------------------------------
def _gguf_groups(listing: Sequence[_File]) -> dict[str, list[_File]]:
    """GGUF files by their name without the split suffix: every part of a split file together."""
    groups: dict[str, list[_File]] = {}
    for f in listing:
        if f.path.lower().endswith(".gguf"):
            groups.setdefault(_SHARD_RE.sub("", f.path), []).append(f)
    return groups


def _file_matches(path: str, pattern: str) -> bool:
    """MODEL_FILE matches a path, its name, or the split file's name without `-0000k-of-0000N`."""
    return matches(path, [pattern]) or matches(_SHARD_RE.sub("", path), [pattern])


def _choices(listing: Sequence[_File]) -> str:
    """`Q4_K_M 4.4 GB (x-Q4_K_M.gguf), Q8_0 8.5 GB (x-Q8_0-00001-of-00002.gguf, 2 parts), ...`."""
    from .._settings import format_bytes

    groups: dict[str, list[_File]] = {}
    for f in listing:
        if is_weight_file(f.path):
            groups.setdefault(_SHARD_RE.sub("", f.path), []).append(f)
    shown = []
    for name, parts in sorted(groups.items()):
        quant = _QUANT_RE.search(_split(name)[1]) if name.lower().endswith(".gguf") else None
        label = f"{quant.group(1)} " if quant else ""
        size = format_bytes(sum(p.size for p in parts))
        first = min(p.path for p in parts)
        extra = f", {len(parts)} parts" if len(parts) > 1 else ""
        shown.append(f"{label}{size} ({first}{extra})")
    return ", ".join(shown)


def select_needed(
    files: Sequence[RemoteFile], include: Sequence[str] = (), contents: Mapping[str, bytes] | None = None
) -> list[RemoteFile]:
    """The files the loader opens, for a listing whose deciding files are in `contents`."""
    plan = plan_selection(files, contents or {}, Selection(include=tuple(include)))
    return [f for f in files if f.path in plan.kept_paths]
