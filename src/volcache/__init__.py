"""volcache: Hugging Face weights stored once, on the network volume, loaded in place."""

from __future__ import annotations

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
from ._settings import Settings

__all__ = [
    "CleanupRefused",
    "ConfigError",
    "InsufficientSpace",
    "IntegrityError",
    "LeaseTimeout",
    "ModelNotFound",
    "OfflineMiss",
    "PinError",
    "Settings",
    "StoreError",
    "SymlinksUnsupported",
    "UnsafeRepoPath",
    "VolcacheError",
]
