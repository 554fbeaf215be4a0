"""The prefetch starts when the snapshot is resolved and is passed to the load; the load's time is split."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from volcache.store import loading as _loading
from volcache.store.loading import Prefetch, start_prefetch, weight_files
from volcache.worker import _load
from volcache.worker._startup import process_age
from volcache.worker.tasks import embeddings


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


def test_start_prefetch_only_for_the_prefetch_strategy(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path, {"model.safetensors": 1_000_000})
    assert start_prefetch(snap, "mmap") is None and start_prefetch(snap, "read") is None
    started = start_prefetch(snap, "prefetch")
    assert started is not None and started.wait(30).bytes_read == 1_000_000


def _fake_sentence_transformers(monkeypatch: pytest.MonkeyPatch, built: list[str]) -> None:
    class SentenceTransformer:
        def __init__(self, folder: str, **kwargs: Any) -> None:
            built.append(folder)

    fake = types.SimpleNamespace(SentenceTransformer=SentenceTransformer)
    monkeypatch.setattr(embeddings, "heavy", lambda name: fake)
    monkeypatch.setattr(_load, "heavy", lambda name: fake)
    monkeypatch.setattr(_load, "resolve_device", lambda requested: "cpu")
    monkeypatch.setattr(_load, "_quiet_progress_bars", lambda: None)


def test_load_task_records_import_construct_and_awaits_the_prefetch_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = _snapshot(tmp_path, {"model.safetensors": 500_000})
    built: list[str] = []
    _fake_sentence_transformers(monkeypatch, built)
    settings = make_settings(tmp_path / "volume", VOLCACHE_LOAD="prefetch")
    early = start_prefetch(snap, "prefetch")
    with _load.load_phases() as phases:
        ctx = _load.load_context(snap, "embeddings", settings, strategy="prefetch", prefetch=early)
        task = _load.load_task(ctx)
    assert built == [str(snap)] and task.name == "embeddings"
    assert ctx.prefetch is early and ctx.strategy == "prefetch"  # passed, not looked up
    assert set(phases) == {"import", "construct", "prefetch_wait"}
    assert all(v >= 0 for v in phases.values())
    assert early is not None and early.done  # awaited before the load returned
    _load.load_model(snap, "embeddings", make_settings(tmp_path / "volume", VOLCACHE_LOAD="mmap"))  # no recorder: fine
    assert len(built) == 2


def test_the_strategy_is_chosen_once_and_reported_as_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = _snapshot(tmp_path, {"model.safetensors": 500_000})
    built: list[str] = []
    _fake_sentence_transformers(monkeypatch, built)
    choices: list[str] = []
    real_choose = _loading.choose_strategy

    def counting_choose(requested: str, snapshot: Path) -> _loading.Strategy:
        choices.append(requested)
        return real_choose(requested, snapshot)

    monkeypatch.setattr(_load, "choose_strategy", counting_choose)
    ctx = _load.load_context(snap, "embeddings", make_settings(tmp_path / "volume"), strategy="read")
    assert ctx.strategy == "read" and choices == []  # a strategy given is used as it is


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


def test_prefetch_threads_follow_the_filesystem(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path, {"model.safetensors": 1000})
    real = os.path.realpath(tmp_path)  # the blobs the snapshot links to live here
    mounts = tmp_path / "mounts"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cases = {
        "fuse.volcache-netfs": _loading.FUSE_BACKGROUND,  # no /sys/fs/fuse entry for this device: the default
        "nfs4": _loading.THREADS,
        "ext4": min(_loading.THREADS, max(4, 2 * cores)),
    }
    for fstype, expected in cases.items():
        mounts.write_text(f"/dev/root / ext4 rw 0 0\nserver:/vol {real} {fstype} rw 0 0\n")
        got = _loading.prefetch_threads(snap, str(mounts))
        if fstype.startswith("fuse"):
            assert 1 <= got <= 64  # the live connection's max_background where the real mount is FUSE
        else:
            assert got == expected, fstype


@pytest.mark.skipif(os.getpriority(os.PRIO_PROCESS, 0) >= 10, reason="this process already runs at nice 10 or more")
def test_prefetch_threads_run_at_low_priority(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path, {"model.safetensors": 3 * 1024 * 1024})
    seen: list[int] = []
    real_read = Prefetch._read

    def spying_read(self: Prefetch, *args: Any) -> int:
        import threading

        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real_read(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Prefetch, "_read", spying_read)
        p = Prefetch(weight_files(snap), threads=2, chunk=1024 * 1024).start().wait(30)
    assert p.bytes_read == 3 * 1024 * 1024
    assert seen and all(n == 10 for n in seen)  # nice +10 in the readers
    assert os.getpriority(os.PRIO_PROCESS, 0) < 10  # and only there: the importing thread keeps its priority


def test_timed_imports_time_each_first_import_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from volcache.worker.tasks.base import heavy, timed_imports

    (tmp_path / "volcache_probe_module_a.py").write_text("import time\ntime.sleep(0.05)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "volcache_probe_module_a", raising=False)
    with timed_imports() as imports:
        heavy("volcache_probe_module_a")
        heavy("volcache_probe_module_a")  # imported already: not timed again
        heavy("os")  # imported before: not a heavy import of this load
    assert list(imports) == ["volcache_probe_module_a"]
    assert imports["volcache_probe_module_a"] >= 0.05
    heavy("volcache_probe_module_a")  # outside: nothing recorded, nothing fails
