"""The prefetch starts when the snapshot is resolved and is claimed by the load; the load's time is split."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from volcache.store import loading as _loading
from volcache.store.loading import Prefetch, claim_prefetch, start_prefetch, weight_files
from volcache.worker import _load
from volcache.worker._startup import process_age


def _snapshot(tmp_path: Path, sizes: dict[str, int]) -> Path:
    snap = tmp_path / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (tmp_path / "blobs").mkdir()
    for i, (name, size) in enumerate(sizes.items()):
        blob = tmp_path / "blobs" / f"b{i}"
        blob.write_bytes(os.urandom(size))
        (snap / name).symlink_to(blob)
    return snap


def test_prefetch_opens_each_file_once_and_reads_every_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = _snapshot(tmp_path, {"a.safetensors": 2_500_000, "b.safetensors": 700_000})
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: Any, flags: int, *args: Any) -> int:
        opened.append(str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(_loading.os, "open", counting_open)
    p = Prefetch(weight_files(snap), threads=4, chunk=256 * 1024).start().wait(30)
    assert p.done and p.bytes_read == 3_200_000
    assert sorted(opened) == sorted(str(f) for f in weight_files(snap))  # one open per file, not per chunk


def test_the_load_claims_the_prefetch_started_at_resolve_once(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path, {"model.safetensors": 1_000_000})
    assert start_prefetch(snap, "mmap") is None and claim_prefetch(snap, "read") is None
    early = start_prefetch(snap, "prefetch")
    assert early is not None
    assert claim_prefetch(snap, "mmap") is early  # claimed whatever `auto` says by then
    later = claim_prefetch(snap, "prefetch")  # nothing left to claim: a new one
    assert later is not None and later is not early
    assert later.wait(30).bytes_read == 1_000_000 and early.wait(30).bytes_read == 1_000_000
    assert _loading._started == {}


def test_load_model_records_import_construct_and_prefetch_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = _snapshot(tmp_path, {"model.safetensors": 500_000})
    built: list[str] = []

    class SentenceTransformer:
        def __init__(self, folder: str, **kwargs: Any) -> None:
            built.append(folder)

    fake = types.SimpleNamespace(SentenceTransformer=SentenceTransformer)
    monkeypatch.setattr(_load, "heavy", lambda name: fake)
    monkeypatch.setattr(_load, "resolve_device", lambda requested: "cpu")
    monkeypatch.setattr(_load, "_quiet_progress_bars", lambda: None)
    settings = make_settings(tmp_path / "volume", VOLCACHE_LOAD="prefetch")
    early = start_prefetch(snap, "prefetch")
    with _load.load_phases() as phases:
        task = _load.load_model(snap, "embeddings", settings)
    assert built == [str(snap)] and task.name == "embeddings"
    assert set(phases) == {"import", "construct", "prefetch_wait"}
    assert all(v >= 0 for v in phases.values())
    assert early is not None and early.done  # awaited before the load returned
    assert _loading._started == {}  # claimed, not started twice
    _load.load_model(snap, "embeddings", make_settings(tmp_path / "volume", VOLCACHE_LOAD="mmap"))  # no recorder: fine


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_process_age_is_the_time_since_this_process_started() -> None:
    age = process_age()
    assert age is not None and 0 <= age < 24 * 3600


def _evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="needs preadv2 RWF_NOWAIT (Linux)")
def test_auto_on_a_local_disk_prefetches_unless_the_weights_are_cached(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path, {"model.safetensors": 3_000_000})
    files = weight_files(snap)
    for f in files:
        f.read_bytes()
    assert _loading.page_cached(files)
    mount = _loading.mount_of(files[0])
    if mount is not None and mount.is_network:
        pytest.skip("the temporary folder is on a network filesystem here")
    assert _loading.choose_strategy("auto", snap) == "mmap"
    for f in files:
        _evict(f)
    if _loading.page_cached(files):
        pytest.skip("this filesystem keeps its pages in memory (tmpfs): nothing to evict")
    assert _loading.choose_strategy("auto", snap) == "prefetch"
    assert _loading.choose_strategy("mmap", snap) == "mmap"
