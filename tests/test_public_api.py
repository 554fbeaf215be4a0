"""Each package's public surface is deliberate: its `__all__` is asserted here, and every name resolves."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from volcache import (
    CleanupRefused,
    ConfigError,
    HostileAnswer,
    HubUnavailable,
    InsufficientSpace,
    IntegrityError,
    InvalidModelId,
    LeaseLost,
    LeaseTimeout,
    ModelNotFound,
    OfflineMiss,
    PinError,
    StoreError,
    SymlinksUnsupported,
    UnsafeRepoPath,
    VolcacheError,
    VolumeIOError,
    VolumeNotMounted,
    one_line,
)
from volcache.store.selection import check_repo_id

EXPECTED = {
    "volcache": [
        "CleanupRefused", "CleanupReport", "CompletionRecord", "ConfigError", "Held", "HostileAnswer",
        "HubUnavailable", "InsufficientSpace", "IntegrityError", "InvalidModelId", "LeaseLost", "LeaseTimeout",
        "ModelNotFound", "ModelStore", "OfflineMiss", "PinError", "Plan", "Preflight", "Resolution", "Settings",
        "Selection", "SelectionError", "StoreError", "StoreSettings", "SymlinksUnsupported", "UnsafeRepoPath",
        "VolcacheError", "VolumeIOError", "VolumeNotMounted", "WorkerSettings", "one_line", "pin",
        "protected_locations", "remove_stale_caches",
    ],
    "volcache.ops": [
        "doctor", "du", "prune", "verify",
    ],
    "volcache.testing": [
        "DEFAULT_LFS_THRESHOLD", "WEIGHT_SUFFIXES", "Faults", "HubEmulator", "Stats", "minilm_folder",
        "mirror_root_with", "write_random_repo",
    ],
    "volcache.store": [
        "WEIGHT_SUFFIXES", "CachedRepo", "CachedSnapshot", "CleanupReport", "CompletionRecord", "Filter", "Held",
        "Holder", "InUse", "InUseMarker", "Lease", "ModelStore", "Plan", "PlannedFile", "Prefetch", "Preflight",
        "Protected", "RemoteFile", "RepoFolder", "Resolution", "Selection", "Strategy", "VolumeLayout",
        "VolumeScan", "WalkResult", "WeightFile", "cache_bytes", "cache_environment", "check_repo_id",
        "choose_strategy", "disk_usage", "free_bytes", "from_pretrained_kwargs", "hold_in_use", "in_readonly_cache",
        "is_mounted", "is_weight_file", "iter_unique", "live_users", "model_id_from_folder", "model_lease", "pin",
        "probe_symlinks", "protected_locations", "read_holder", "read_marker", "read_markers", "recorded_models",
        "records_of", "remove_stale_caches", "repo_folder", "require_mounted", "retry_io", "scan_volume",
        "select_needed", "snapshot_blobs", "snapshot_bytes", "start_prefetch", "tree_bytes", "volume_clock",
        "walk_weights", "weight_bytes",
    ],
}  # fmt: skip


@pytest.mark.parametrize("package", sorted(EXPECTED))
def test_all_is_deliberate_and_resolves(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(EXPECTED[package])
    assert [name for name in module.__all__ if not hasattr(module, name)] == []


def test_the_worker_exports_resolve() -> None:
    import volcache.worker

    assert [name for name in volcache.worker.__all__ if not hasattr(volcache.worker, name)] == []


# -- errors carry fields --------------------------------------------------------------------------
def test_the_error_tree() -> None:
    from volcache.worker import JobError

    for cls in (ConfigError, PinError, CleanupRefused, StoreError, OfflineMiss, JobError):
        assert issubclass(cls, VolcacheError)
    for cls in (InsufficientSpace, LeaseTimeout, LeaseLost, IntegrityError, UnsafeRepoPath, SymlinksUnsupported):
        assert issubclass(cls, StoreError)
    for cls in (ModelNotFound, HubUnavailable, VolumeIOError, VolumeNotMounted):
        assert issubclass(cls, StoreError)
    assert issubclass(InvalidModelId, UnsafeRepoPath) and issubclass(HostileAnswer, UnsafeRepoPath)
    assert issubclass(HubUnavailable, ConnectionError) and issubclass(InsufficientSpace, OSError)
    retry_helps = {
        cls for cls in (LeaseTimeout, LeaseLost, IntegrityError, HubUnavailable, VolumeIOError) if cls("x").retryable
    }
    assert retry_helps == {LeaseTimeout, LeaseLost, IntegrityError, HubUnavailable, VolumeIOError}
    user_must_act = (ConfigError, InsufficientSpace, ModelNotFound, InvalidModelId, HostileAnswer, VolumeNotMounted)
    assert [cls for cls in user_must_act if cls("x").retryable] == []


def test_errors_carry_model_revision_and_path() -> None:
    exc = InsufficientSpace("no room", model="org/x", revision="main", path="/vol")
    assert (exc.model, exc.revision, str(exc.path), exc.retryable) == ("org/x", "main", "/vol", False)
    assert HubUnavailable("down", retryable=False).retryable is False
    with pytest.raises(InvalidModelId) as err:
        check_repo_id("org/na me")
    assert err.value.model == "org/na me" and not err.value.retryable


def test_one_line_is_built_from_the_message_and_the_fields() -> None:
    assert one_line(ModelNotFound("org/x was\nnot found.", model="org/x")) == "org/x was not found."
    transient = one_line(HubUnavailable("the Hub did not answer.", model="org/x"))
    assert transient.startswith("the Hub did not answer.") and "may heal" in transient and "\n" not in transient


# -- optional parts ------------------------------------------------------------------------------
_HIDE = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pydantic", "runpod"):
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, Hide())
from volcache.cli import main
main(["serve", "--test_input", "{}"])
"""


def test_serve_without_the_worker_extra_names_it_in_one_line() -> None:
    proc = subprocess.run([sys.executable, "-c", _HIDE], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'volcache[worker]'" in lines[0], proc.stderr
