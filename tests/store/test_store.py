"""ModelStore.ensure against the offline Hub emulator: one copy, complete or absent, offline warm starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import TINY_NEEDED_BYTES, make_settings
from volcache import (
    InsufficientSpace,
    IntegrityError,
    ModelNotFound,
    ModelStore,
    OfflineMiss,
    StoreError,
    SymlinksUnsupported,
    UnsafeRepoPath,
)
from volcache.store import VolumeLayout
from volcache.store.record import read_record
from volcache.testing import Faults, HubEmulator


def _store(volume: Path, hub: HubEmulator, **env: object) -> ModelStore:
    return ModelStore(make_settings(volume, HF_ENDPOINT=hub.url, **env))


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def test_download_lands_in_the_hub_layout_on_the_volume(volume: Path, hub: HubEmulator) -> None:
    store = _store(volume, hub)
    res = store.resolve("org/tiny")
    commit = hub.commit_sha("org/tiny")
    assert res.source == "download" and res.commit == commit
    assert res.path == volume / "models/hub/models--org--tiny/snapshots" / commit
    assert (volume / "models/hub/models--org--tiny/refs/main").read_text() == commit
    # needed files only: safetensors preferred, .bin and onnx skipped
    assert sorted(p.relative_to(res.path).as_posix() for p in res.path.rglob("*") if p.is_file()) == [
        "config.json", "model.safetensors", "tokenizer.json"]  # fmt: skip
    assert all((res.path / n).is_symlink() for n in ("config.json", "model.safetensors"))
    assert res.downloaded_bytes == TINY_NEEDED_BYTES
    assert set(hub.stats.per_file) == {"org/tiny/config.json", "org/tiny/model.safetensors", "org/tiny/tokenizer.json"}
    record = read_record(VolumeLayout.of(store.settings).record("org/tiny", commit))
    assert record is not None and record.total_bytes == TINY_NEEDED_BYTES
    lfs = next(f for f in record.files if f.path == "model.safetensors")
    assert lfs.sha256 and (res.path / "model.safetensors").resolve().name == lfs.sha256


def test_huggingface_hub_understands_the_volume(volume: Path, hub: HubEmulator) -> None:
    from huggingface_hub import scan_cache_dir

    _store(volume, hub).ensure("org/tiny")
    info = scan_cache_dir(volume / "models/hub")
    assert [r.repo_id for r in info.repos] == ["org/tiny"]
    assert info.warnings == []


def test_warm_start_makes_zero_requests(volume: Path, hub: HubEmulator) -> None:
    first = _store(volume, hub).resolve("org/tiny")
    hub.reset_stats()
    second = _store(volume, hub).resolve("org/tiny")
    assert second.path == first.path and second.source == "volume"
    assert hub.stats.requests == 0


def test_offline_mode_serves_complete_models_and_refuses_missing_ones(volume: Path, hub: HubEmulator) -> None:
    with pytest.raises(OfflineMiss, match="HF_HUB_OFFLINE"):
        _store(volume, hub, HF_HUB_OFFLINE="1").resolve("org/tiny")
    _store(volume, hub).ensure("org/tiny")
    hub.reset_stats()
    assert _store(volume, hub, HF_HUB_OFFLINE="1").resolve("org/tiny").source == "volume"
    assert hub.stats.requests == 0


def test_a_snapshot_without_record_is_never_served(volume: Path, hub: HubEmulator) -> None:
    store = _store(volume, hub)
    res = store.resolve("org/tiny")
    rec = VolumeLayout.of(store.settings).record("org/tiny", res.commit or "")
    rec.unlink()
    hub.reset_stats()
    assert store.find_local("org/tiny", "main") is None
    again = store.resolve("org/tiny")  # re-verified under the lease, no bytes downloaded again
    assert again.downloaded_bytes == 0 and hub.stats.bytes_served == 0
    assert rec.exists()


def test_a_truncated_file_invalidates_the_record(volume: Path, hub: HubEmulator) -> None:
    store = _store(volume, hub)
    res = store.resolve("org/tiny")
    blob = (res.path / "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:1000])
    assert store.find_local("org/tiny", "main") is None


def test_include_patterns_add_skipped_formats(volume: Path, hub: HubEmulator) -> None:
    res = _store(volume, hub, VOLCACHE_INCLUDE="onnx/*").resolve("org/tiny")
    assert (res.path / "onnx/model.onnx").is_file()


def test_preflight_refuses_and_writes_nothing(volume: Path, hub: HubEmulator) -> None:
    with pytest.raises(InsufficientSpace) as err:
        _store(volume, hub, VOLCACHE_FREE_MARGIN="1000TB").resolve("org/tiny")
    message = str(err.value)
    assert f"({TINY_NEEDED_BYTES} bytes)" in message and "free" in message and "Fix:" in message
    assert hub.stats.file_requests == 0
    assert _files_under(volume) == []


def test_runpod_cached_model_is_used_in_place_case_insensitively(volume: Path, hub: HubEmulator) -> None:
    commit = "c" * 40
    repo = volume / "huggingface-cache/hub/models--org--tiny"  # RunPod lower-cases folder names
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs/main").write_text(commit)
    res = _store(volume, hub).resolve("Org/Tiny")
    assert res.source == "readonly-cache" and res.path == repo / "snapshots" / commit
    assert hub.stats.requests == 0
    assert not (volume / "models").exists()


def test_unknown_model_and_revision(volume: Path, hub: HubEmulator) -> None:
    with pytest.raises(ModelNotFound, match="org/missing was not found"):
        _store(volume, hub).resolve("org/missing")
    with pytest.raises(ModelNotFound, match="no revision 'v9'"):
        _store(volume, hub).resolve("org/tiny", "v9")


def test_corrupted_bytes_are_never_recorded_complete(volume: Path, hub: HubEmulator) -> None:
    hub.faults = Faults(corrupt=True, only="*.safetensors")
    store = _store(volume, hub)
    with pytest.raises(IntegrityError, match="sha256"):
        store.resolve("org/tiny")
    assert store.find_local("org/tiny", "main") is None
    assert not list((volume / "models/.volcache/records").rglob("*.json"))
    hub.faults = Faults()
    assert store.resolve("org/tiny").source == "download"


def test_transient_5xx_is_retried(volume: Path, hub: HubEmulator) -> None:
    hub.faults = Faults(status=503, fail_first=2)
    assert _store(volume, hub).resolve("org/tiny").source == "download"


def test_hostile_tree_listing_is_refused(volume: Path, hub: HubEmulator, tmp_path: Path) -> None:
    hub.faults = Faults(tree_override=[{"type": "file", "path": "../../escaped.txt", "size": 3, "oid": "a" * 40}])
    with pytest.raises(UnsafeRepoPath, match="unsafe path"):
        _store(volume, hub).resolve("org/tiny")
    assert not list(tmp_path.rglob("escaped.txt"))


def test_volume_without_symlinks_is_refused(volume: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_symlinks(*args: object, **kwargs: object) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    with pytest.raises(SymlinksUnsupported, match="second copy"):
        _store(volume, hub).resolve("org/tiny")
    assert hub.stats.file_requests == 0


def test_unreachable_hub_gives_a_clear_error(volume: Path) -> None:
    store = ModelStore(make_settings(volume, HF_ENDPOINT="http://127.0.0.1:9"))
    with pytest.raises(StoreError):
        store.resolve("org/tiny")
