"""The exceptions volcache raises. Each carries fields, so callers decide without reading text.

Fields on every error: `model`, `revision`, `path` (each None when it does not apply) and
`retryable`: True when trying again later can help (the network, a transient I/O error, another
worker), False when a person must change something (a setting, the model id, the volume's space).
The CLI and the worker print `one_line(exc)`, built from the message and these fields.

VolcacheError
├── ConfigError(VolcacheError, ValueError)       a setting cannot be parsed or is unsafe
├── PinError(VolcacheError, RuntimeError)         huggingface_hub imported with other cache paths (I7)
├── CleanupRefused(VolcacheError, ValueError)     a stale-cache path may not be deleted (I6)
├── StoreError(VolcacheError, RuntimeError)       the model store cannot provide a model
│   ├── InsufficientSpace(StoreError, OSError)    preflight: not enough room on the volume (I4)
│   ├── LeaseTimeout(StoreError, TimeoutError)    another worker held the download lease too long (I3)   retryable
│   ├── LeaseLost(StoreError)                     another worker took this worker's lease over (I3)      retryable
│   ├── IntegrityError(StoreError)                a downloaded file has the wrong size or sha256 (I2)    retryable
│   ├── UnsafeRepoPath(StoreError)                a name that would land outside the cache
│   │   ├── InvalidModelId(UnsafeRepoPath, ValueError)   the user's model id or revision is malformed
│   │   └── HostileAnswer(UnsafeRepoPath)                the Hub's listing or headers name a bad path (I8)
│   ├── SymlinksUnsupported(StoreError, OSError)  the cache folder cannot hold symlinks (I1)
│   ├── ModelNotFound(StoreError, LookupError)    the repo or revision does not exist, or needs a token
│   ├── SelectionError(StoreError)                no loadable file set for this request (MODEL_FILE, MODEL_VARIANT)
│   ├── HubUnavailable(StoreError, ConnectionError)  the Hub did not answer                           retryable
│   ├── VolumeIOError(StoreError, OSError)        the volume kept failing with EIO/ESTALE               retryable
│   └── VolumeNotMounted(StoreError)              VOLCACHE_REQUIRE_VOLUME=1 and no volume is mounted
├── OfflineMiss(VolcacheError, ConnectionError)   offline mode and the model is not complete on the volume
└── JobError (volcache.worker)                    a job the worker cannot run as sent
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar


class VolcacheError(Exception):
    """Base class of every error volcache raises on purpose."""

    #: The class's default for `retryable`; an instance may say otherwise.
    transient: ClassVar[bool] = False

    def __init__(
        self,
        message: str = "",
        *,
        model: str | None = None,
        revision: str | None = None,
        path: Path | str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.model = model
        self.revision = revision
        self.path = Path(path) if path is not None else None
        self.retryable = type(self).transient if retryable is None else retryable

    def __str__(self) -> str:
        return self.message


def one_line(exc: BaseException) -> str:
    """The error as one line for a terminal or a log: its message, and whether retrying can help."""
    text = " ".join(str(exc).split())
    if isinstance(exc, VolcacheError) and exc.retryable and "retry" not in text.lower() and "heal" not in text:
        text += " (this may heal: try again later)"
    return text


class ConfigError(VolcacheError, ValueError):
    """An environment variable or option has a value volcache cannot use."""


class PinError(VolcacheError, RuntimeError):
    """A Hugging Face library was imported before `volcache.pin()` with other cache paths."""


class CleanupRefused(VolcacheError, ValueError):
    """A path on the stale-cache list is not safe to delete."""


class StoreError(VolcacheError, RuntimeError):
    """The model store cannot provide the model."""


class InsufficientSpace(StoreError, OSError):
    """The volume does not have room for the bytes still missing plus the margin."""


class LeaseTimeout(StoreError, TimeoutError):
    """Another worker kept a live lease on the model longer than this worker may wait."""

    transient = True


class LeaseLost(StoreError):
    """Another worker took the download lease over while this one held it."""

    transient = True


class IntegrityError(StoreError):
    """A file on the volume does not match the Hub's size or sha256."""

    transient = True


class UnsafeRepoPath(StoreError):
    """A name that would land outside the cache was refused before it reached a path."""


class InvalidModelId(UnsafeRepoPath, ValueError):
    """The model id or revision a user gave is not of the Hub's form; they must correct it."""


class HostileAnswer(UnsafeRepoPath):
    """The Hub (or a mirror, or whoever sits between) answered with a path, id or size that cannot be right."""


class SymlinksUnsupported(StoreError, OSError):
    """The cache folder cannot hold symlinks, so the Hub client would keep a second copy."""


class ModelNotFound(StoreError, LookupError):
    """The repository or revision does not exist, or needs a token."""


class SelectionError(StoreError):
    """The repository's files give no loadable selection for this request (e.g. choose a GGUF file)."""


class HubUnavailable(StoreError, ConnectionError):
    """The Hub did not answer (after retries); trying again later may work."""

    transient = True


class VolumeIOError(StoreError, OSError):
    """The volume answered with transient I/O errors (EIO, ESTALE) beyond the retry bound."""

    transient = True


class VolumeNotMounted(StoreError):
    """`VOLCACHE_REQUIRE_VOLUME=1` and the volume folder is not a mount point."""


class OfflineMiss(VolcacheError, ConnectionError):
    """Offline mode is on and the model is not complete on the volume."""
