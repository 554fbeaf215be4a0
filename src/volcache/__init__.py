"""volcache: Hugging Face weights stored once, on the network volume, loaded in place."""

from __future__ import annotations

from ._cleanup import CleanupReport, remove_stale_caches
from ._errors import (
    CleanupRefused,
    ConfigError,
    InsufficientSpace,
    IntegrityError,
    LeaseTimeout,
    ModelNotFound,
    OfflineMiss,
    PinError,
    StoreError,
    SymlinksUnsupported,
    UnsafeRepoPath,
    VolcacheError,
)
from ._pin import Pinned, pin
from ._record import CompletionRecord
from ._settings import Settings
from ._store import ModelStore, Preflight, Resolution

__all__ = [
    "CleanupRefused",
    "CleanupReport",
    "CompletionRecord",
    "ConfigError",
    "InsufficientSpace",
    "IntegrityError",
    "LeaseTimeout",
    "ModelNotFound",
    "ModelStore",
    "OfflineMiss",
    "PinError",
    "Pinned",
    "Preflight",
    "Resolution",
    "Settings",
    "StoreError",
    "SymlinksUnsupported",
    "UnsafeRepoPath",
    "VolcacheError",
    "pin",
    "remove_stale_caches",
]
