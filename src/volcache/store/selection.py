"""Which files of a repository a worker needs, and which listed paths are safe to write.

Repositories often hold the same weights several times (safetensors, .bin, onnx/,
openvino/, gguf, TensorFlow and Flax). Downloading only what the task loads is disk
saved before anything else happens.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from .._errors import HostileAnswer, InvalidModelId
from .layout import SHA1_RE as _SHA_RE

WEIGHT_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".onnx_data",
    ".h5", ".msgpack", ".ot", ".tflite", ".mlmodel", ".pb", ".npz", ".nemo", ".keras",
)  # fmt: skip

# Formats a PyTorch worker never loads: skipped unless VOLCACHE_INCLUDE asks for them.
_OTHER_RUNTIMES = (
    "onnx/*", "openvino/*", "coreml/*", "*.onnx", "*.onnx_data", "*.gguf", "*.ggml", "*.h5",
    "*.msgpack", "*.ot", "*.tflite", "*.mlmodel", "*.mlpackage/*", "*.pb", "tf_model*", "flax_model*",
    "*.keras",
)  # fmt: skip
# PyTorch pickles duplicate safetensors weights when both are present.
_PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.bin.index.json")
_NEVER_NEEDED = (".gitattributes",)
MAX_FILE_SIZE = 2 * 1000**4  # 2 TB: anything larger in a listing is an error, not a model
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file of a repository at a commit, as the Hub lists it."""

    path: str
    size: int
    sha256: str | None  # set for LFS files: the blob is named by it and must hash to it
    oid: str  # git blob id for regular files, sha256 for LFS files: the blob's file name


def is_weight_file(name: str) -> bool:
    return name.lower().endswith(WEIGHT_SUFFIXES)


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


def _matches(path: str, patterns: Sequence[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def select_needed(files: Sequence[RemoteFile], include: Sequence[str] = ()) -> list[RemoteFile]:
    """The files a PyTorch worker loads: safetensors preferred, other runtimes skipped.

    `include` patterns (fnmatch on the path or the file name) always win.
    """
    has_safetensors = any(f.path.endswith(".safetensors") for f in files)
    needed = []
    for f in files:
        if _matches(f.path, include):
            needed.append(f)
            continue
        if f.path in _NEVER_NEEDED or _matches(f.path, _OTHER_RUNTIMES):
            continue
        if has_safetensors and _matches(f.path, _PICKLED):
            continue
        needed.append(f)
    return needed
