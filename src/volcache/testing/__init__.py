"""Test support for volcache and its users: an offline Hugging Face Hub and model folders to serve.

See `volcache.testing.hub` for the emulator's endpoints, counters and faults.
"""

from __future__ import annotations

from .hub import (
    DEFAULT_LFS_THRESHOLD,
    WEIGHT_SUFFIXES,
    Faults,
    HubEmulator,
    Stats,
    minilm_folder,
    mirror_root_with,
    write_random_repo,
)

__all__ = [
    "DEFAULT_LFS_THRESHOLD",
    "WEIGHT_SUFFIXES",
    "Faults",
    "HubEmulator",
    "Stats",
    "minilm_folder",
    "mirror_root_with",
    "write_random_repo",
]
