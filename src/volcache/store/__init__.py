"""The model store: everything about the volume, one module per concept.

- `layout`: every path on the volume (`VolumeLayout`, `RepoFolder`);
- `scan`: the one scan of the cache (`scan_volume` → `CachedRepo` → `CachedSnapshot`);
- `weights`: weight files on any disk (the container disk, `du`);
- `integrity`: the one file check and the hashes;
- `hub`: the Hub listing, the answer checks, fetching, the retry helper, the error mapping;
- `store`: `ModelStore.resolve` and `hold`;
- `lease`, `record`, `inuse`, `selection`, `pin`, `cleanup`, `loading`, `volume`.
"""

from __future__ import annotations

from .cleanup import CleanupReport, Protected, protected_locations, remove_stale_caches
from .inuse import InUse, InUseMarker, hold_in_use, live_users, read_marker, read_markers, volume_clock
from .layout import RepoFolder, VolumeLayout, model_id_from_folder, repo_folder
from .lease import Holder, Lease, model_lease, read_holder
from .loading import Prefetch, Strategy, choose_strategy, from_pretrained_kwargs, start_prefetch
from .pin import cache_environment, pin
from .record import CompletionRecord
from .scan import (
    CachedRepo,
    CachedSnapshot,
    VolumeScan,
    cache_bytes,
    in_readonly_cache,
    recorded_models,
    records_of,
    scan_volume,
    snapshot_blobs,
)
from .selection import (
    WEIGHT_SUFFIXES,
    Plan,
    PlannedFile,
    RemoteFile,
    Selection,
    check_repo_id,
    is_weight_file,
    select_needed,
)
from .store import Held, ModelStore, Preflight, Resolution
from .volume import disk_usage, free_bytes, is_mounted, probe_symlinks, require_mounted, retry_io
from .weights import Filter, WalkResult, WeightFile, iter_unique, snapshot_bytes, tree_bytes, walk_weights, weight_bytes

__all__ = [
    "WEIGHT_SUFFIXES",
    "CachedRepo",
    "CachedSnapshot",
    "CleanupReport",
    "CompletionRecord",
    "Filter",
    "Held",
    "Holder",
    "InUse",
    "InUseMarker",
    "Lease",
    "ModelStore",
    "Plan",
    "PlannedFile",
    "Prefetch",
    "Preflight",
    "Protected",
    "RemoteFile",
    "RepoFolder",
    "Resolution",
    "Selection",
    "Strategy",
    "VolumeLayout",
    "VolumeScan",
    "WalkResult",
    "WeightFile",
    "cache_bytes",
    "cache_environment",
    "check_repo_id",
    "choose_strategy",
    "disk_usage",
    "free_bytes",
    "from_pretrained_kwargs",
    "hold_in_use",
    "in_readonly_cache",
    "is_mounted",
    "is_weight_file",
    "iter_unique",
    "live_users",
    "model_id_from_folder",
    "model_lease",
    "pin",
    "probe_symlinks",
    "protected_locations",
    "read_holder",
    "read_marker",
    "read_markers",
    "recorded_models",
    "records_of",
    "remove_stale_caches",
    "repo_folder",
    "require_mounted",
    "retry_io",
    "scan_volume",
    "select_needed",
    "snapshot_blobs",
    "snapshot_bytes",
    "start_prefetch",
    "tree_bytes",
    "volume_clock",
    "walk_weights",
    "weight_bytes",
]
