"""The exceptions volcache raises; each message states what is wrong and the fix.

VolcacheError
├── ConfigError(VolcacheError, ValueError)       a setting cannot be parsed
├── PinError(VolcacheError, RuntimeError)         huggingface_hub imported with other cache paths (I7)
├── CleanupRefused(VolcacheError, ValueError)     a stale-cache path may not be deleted (I6)
├── StoreError(VolcacheError, RuntimeError)       the model store cannot provide a model
│   ├── InsufficientSpace(StoreError, OSError)    preflight: not enough room on the volume (I4)
│   ├── LeaseTimeout(StoreError, TimeoutError)    another worker held the download lease too long (I3)
│   ├── IntegrityError(StoreError)                a downloaded file has the wrong size or sha256 (I2)
│   ├── UnsafeRepoPath(StoreError)                the Hub listed a path that escapes the cache
│   ├── SymlinksUnsupported(StoreError, OSError)  the cache folder cannot hold symlinks (I1)
│   ├── ModelNotFound(StoreError, LookupError)    the repo or revision does not exist
│   └── SelectionError(StoreError)                no loadable file set for this request (MODEL_FILE, MODEL_VARIANT)
└── OfflineMiss(VolcacheError, ConnectionError)   offline mode and the model is not complete on the volume
"""

from __future__ import annotations


class VolcacheError(Exception):
    """Base class of every error volcache raises on purpose."""


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


class IntegrityError(StoreError):
    """A file on the volume does not match the Hub's size or sha256."""


class UnsafeRepoPath(StoreError):
    """The Hub listed a file whose path would land outside the cache."""


class SymlinksUnsupported(StoreError, OSError):
    """The cache folder cannot hold symlinks, so the Hub client would keep a second copy."""


class ModelNotFound(StoreError, LookupError):
    """The repository or revision does not exist, or needs a token."""


class OfflineMiss(VolcacheError, ConnectionError):
    """Offline mode is on and the model is not complete on the volume."""


class SelectionError(StoreError):
    """The repository's files give no loadable selection for this request (e.g. choose a GGUF file)."""
