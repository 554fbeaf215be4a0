"""Compile and kernel caches on the volume, keyed by what invalidates them, safe for many writers.

vLLM compiles the model's graph (torch.compile / Inductor) and, on a GPU, Triton kernels at start;
a second worker that finds the results skips that work. The caches live under the volume home:

    <home>/compile/<key>/                 a complete entry: vllm/, inductor/, triton/ (never written again)
    <home>/compile/.incoming-<key>-<id>/  an entry being published (a temporary name)

`<key>` names every version the artifacts depend on: vLLM, torch, CUDA, the accelerator, and a
hash of the engine's arguments (model snapshot, dtype, lengths...), e.g.
`vllm-0.32.0_torch-2.13.0+cpu_cuda-none_nvidia-h200_3f9c2a1b7e4d`.

Many workers start at once on one volume, and the libraries write their caches file by file
(vLLM's own index is a plain `open(..., "w")`), so a worker never compiles into the shared entry:
its engine writes into a private folder on the container disk (`<ephemeral>/compile/<key>`),
seeded from the shared entry when there is one. Once the warm-up has compiled everything, a
worker that found no entry publishes its folder: it writes `.incoming-<key>-<id>` and renames it
to `<key>`. A rename is atomic and fails onto a folder that is not empty, so the first complete
entry wins, a reader sees a whole entry or none, and a worker killed mid-publish leaves only an
`.incoming-*` folder (which `volcache prune` may delete once it is old). A worker reads the entry
only while it starts, so deleting one never breaks a running worker (one starting then compiles);
a reuse sets the entry's mtime, for least-recently-used pruning. Nothing here is a weight: vLLM
saves its graphs with every tensor on the meta device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...ops.compile_cache import INCOMING_PREFIX  # one name for the publish folders, shared with prune

log = logging.getLogger("volcache.worker")

COMPILE_DIR = "compile"  # under the volume home
# The caches each library reads from its own variable, and the subfolder each gets in an entry.
CACHE_VARIABLES = {"VLLM_CACHE_ROOT": "vllm", "TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton"}


def cache_key(versions: Mapping[str, str], accelerator: str, arguments: Sequence[str]) -> str:
    """A folder name from the versions, the accelerator's name and the engine's arguments."""
    parts = [f"{name}-{_slug(value)}" for name, value in versions.items()]
    digest = hashlib.sha256(json.dumps(list(arguments)).encode()).hexdigest()[:12]
    return "_".join([*parts, _slug(accelerator), digest])


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.+-]+", "-", text.strip().lower()).strip("-") or "unknown"


@dataclasses.dataclass(frozen=True)
class CompileCache:
    """One key's caches: the shared entry on the volume and this worker's private working folder."""

    shared: Path  # <home>/compile/<key>: complete or absent
    local: Path  # <ephemeral>/compile/<key>: what the engine reads and writes

    @classmethod
    def at(cls, shared_root: Path, ephemeral: Path, key: str) -> CompileCache:
        """`shared_root` is the volume's compile cache (`Settings.compile_cache`)."""
        return cls(shared=shared_root / key, local=ephemeral / COMPILE_DIR / key)

    @property
    def key(self) -> str:
        return self.shared.name

    def environment(self) -> dict[str, str]:
        """The variables that point each library at its folder in the working copy."""
        return {variable: str(self.local / sub) for variable, sub in CACHE_VARIABLES.items()}

    def prepare(self) -> bool:
        """Fill the working folder from the shared entry; True when there was one to reuse."""
        if self.local.exists():
            shutil.rmtree(self.local)  # a previous run's leftovers, ours alone (container disk)
        self.local.parent.mkdir(parents=True, exist_ok=True)
        if self.shared.is_dir():
            try:
                shutil.copytree(self.shared, self.local, symlinks=True)
            except OSError as exc:  # a damaged entry costs a compile, never the start
                log.warning("volcache: compile cache %s unreadable (%s); compiling afresh", self.shared, exc)
                shutil.rmtree(self.local, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):  # the entry's mtime says when it was last used (prune's LRU)
                    os.utime(self.shared)
                log.info("volcache: compile cache %s reused", self.key)
                return True
        for sub in CACHE_VARIABLES.values():
            (self.local / sub).mkdir(parents=True, exist_ok=True)
        return False

    def publish(self) -> bool:
        """Offer the working folder as the shared entry (first complete one wins); True if it is now ours."""
        if self.shared.exists() or not _has_files(self.local):
            return False
        incoming = self.shared.with_name(f"{INCOMING_PREFIX}{self.key}-{uuid.uuid4().hex[:12]}")
        try:
            shutil.copytree(self.local, incoming, symlinks=True)
            os.rename(incoming, self.shared)
        except OSError as exc:
            shutil.rmtree(incoming, ignore_errors=True)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                return False  # another worker published first: its entry is as good as ours
            log.warning("volcache: could not publish compile cache %s (%s)", self.key, exc)
            return False
        log.info("volcache: compile cache %s published on the volume", self.key)
        return True

    def discard(self) -> None:
        """Remove the working folder (container disk); the shared entry stays."""
        with contextlib.suppress(OSError):
            shutil.rmtree(self.local)


def _has_files(folder: Path) -> bool:
    return any(files for _, _, files in os.walk(folder))
