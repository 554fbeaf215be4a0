"""The compile cache on the volume: keyed by what invalidates it, published whole by one rename, first one wins."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from volcache.worker.tasks._compile_cache import COMPILE_DIR, INCOMING_PREFIX, CompileCache, cache_key

VERSIONS = {"vllm": "0.32.0+cpu", "torch": "2.13.0+cpu", "cuda": "12.8"}


def _cache(base: Path, worker: str, key: str = "k") -> CompileCache:
    return CompileCache.at(base / "volume" / "models" / COMPILE_DIR, base / worker / "ephemeral", key)


def _compile(cache: CompileCache, files: dict[str, str]) -> None:
    """What an engine does: write its artifacts into the folders the environment points at."""
    env = cache.environment()
    for rel, text in files.items():
        variable, _, name = rel.partition("/")
        path = Path(env[variable]) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_key_names_each_version_the_gpu_and_the_arguments() -> None:
    key = cache_key(VERSIONS, "NVIDIA H200", ["--max-model-len", "4096"])
    assert key.startswith("vllm-0.32.0+cpu_torch-2.13.0+cpu_cuda-12.8_nvidia-h200_")
    assert key != cache_key(VERSIONS, "NVIDIA H200", ["--max-model-len", "8192"])
    assert key != cache_key({**VERSIONS, "torch": "2.14.0"}, "NVIDIA H200", ["--max-model-len", "4096"])
    assert key != cache_key(VERSIONS, "NVIDIA A100-SXM4-80GB", ["--max-model-len", "4096"])
    assert "/" not in cache_key(VERSIONS, "../../etc", [])


def test_the_environment_points_each_library_at_the_private_working_copy(tmp_path: Path) -> None:
    cache = _cache(tmp_path, "w1")
    env = cache.environment()
    assert set(env) == {"VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"}
    assert all(Path(v).is_relative_to(tmp_path / "w1" / "ephemeral" / COMPILE_DIR / "k") for v in env.values())


def test_a_first_worker_publishes_and_a_second_starts_from_the_entry(tmp_path: Path) -> None:
    first = _cache(tmp_path, "w1")
    assert first.prepare() is False  # nothing to reuse yet
    _compile(first, {"VLLM_CACHE_ROOT/torch_compile_cache/index.py": "graph", "TORCHINDUCTOR_CACHE_DIR/ab/x.so": "so"})
    assert first.publish() is True
    assert (first.shared / "vllm" / "torch_compile_cache" / "index.py").read_text() == "graph"
    assert not any(p.name.startswith(INCOMING_PREFIX) for p in first.shared.parent.iterdir())

    second = _cache(tmp_path, "w2")
    assert second.prepare() is True
    assert (Path(second.environment()["TORCHINDUCTOR_CACHE_DIR"]) / "ab" / "x.so").read_text() == "so"
    _compile(second, {"VLLM_CACHE_ROOT/torch_compile_cache/index.py": "rewritten by the engine"})
    assert (first.shared / "vllm" / "torch_compile_cache" / "index.py").read_text() == "graph"  # never written again


def test_an_empty_working_copy_is_never_published(tmp_path: Path) -> None:
    cache = _cache(tmp_path, "w1")
    cache.prepare()
    assert cache.publish() is False
    assert not cache.shared.exists()


def test_many_workers_publishing_at_once_leave_one_whole_entry(tmp_path: Path) -> None:
    caches = [_cache(tmp_path, f"w{i}") for i in range(8)]
    for i, cache in enumerate(caches):
        cache.prepare()
        _compile(cache, {f"VLLM_CACHE_ROOT/f{n}": f"worker {i}" for n in range(20)})
    barrier, results = threading.Barrier(len(caches)), []

    def publish(cache: CompileCache) -> None:
        barrier.wait()
        results.append(cache.publish())

    threads = [threading.Thread(target=publish, args=(c,)) for c in caches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    entry = caches[0].shared / "vllm"
    writers = {(entry / f"f{n}").read_text() for n in range(20)}
    assert len(writers) == 1  # every file from the one worker that won: never a mixture
    assert sorted(os.listdir(caches[0].shared.parent)) == ["k"]  # no temporary folder left behind


def test_a_worker_killed_mid_publish_leaves_only_an_incoming_folder_that_readers_ignore(tmp_path: Path) -> None:
    cache = _cache(tmp_path, "w1")
    half = cache.shared.with_name(f"{INCOMING_PREFIX}k-dead")
    (half / "vllm").mkdir(parents=True)
    (half / "vllm" / "part").write_text("half")
    reader = _cache(tmp_path, "w2")
    assert reader.prepare() is False
    assert not (Path(reader.environment()["VLLM_CACHE_ROOT"]) / "part").exists()


def test_a_reuse_marks_the_entry_used_now_and_a_deleted_entry_costs_only_a_compile(tmp_path: Path) -> None:
    first = _cache(tmp_path, "w1")
    first.prepare()
    _compile(first, {"VLLM_CACHE_ROOT/index.py": "graph"})
    first.publish()
    os.utime(first.shared, (1_000_000, 1_000_000))
    assert _cache(tmp_path, "w2").prepare() is True
    assert first.shared.stat().st_mtime > 1_000_000
    shutil.rmtree(first.shared)  # what `volcache prune` may do at any time
    assert _cache(tmp_path, "w3").prepare() is False
