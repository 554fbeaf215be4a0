"""The engines' compile caches on the volume: `du` reports them apart from weights, `prune` evicts old ones."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.ops.conftest import invoke
from volcache.ops.compile_cache import plan_compile_prune, remove_entries, scan_compile_cache

DAY = 86400.0


def _entry(root: Path, name: str, size: int, age: float) -> Path:
    folder = root / name
    (folder / "inductor").mkdir(parents=True)
    (folder / "inductor" / "kernel.so").write_bytes(b"k" * size)
    then = time.time() - age
    os.utime(folder, (then, then))
    return folder


def _compile_root(volume: Path) -> Path:
    return volume / "models" / "compile"


def test_plan_keeps_recent_entries_and_drops_old_and_abandoned_publishes(tmp_path: Path) -> None:
    root = tmp_path / "compile"
    _entry(root, "vllm-0.32-old", 300, 20 * DAY)
    _entry(root, "vllm-0.32-new", 200, 60)
    _entry(root, ".incoming-vllm-0.32-new-abc", 100, 2 * 3600)  # a worker killed while publishing
    _entry(root, ".incoming-vllm-0.32-new-def", 100, 30)  # a publish happening now
    entries = scan_compile_cache(root)
    assert len(entries) == 4 and entries[0].path.name == "vllm-0.32-old"  # oldest first
    stale = plan_compile_prune(entries, older_than=14 * DAY)
    assert sorted(e.path.name for e in stale) == [".incoming-vllm-0.32-new-abc", "vllm-0.32-old"]
    assert remove_entries(root, stale) == 400
    assert sorted(p.name for p in root.iterdir()) == [".incoming-vllm-0.32-new-def", "vllm-0.32-new"]


def test_remove_never_follows_a_symlink_or_leaves_the_cache(tmp_path: Path) -> None:
    root = tmp_path / "compile"
    outside = _entry(tmp_path / "elsewhere", "precious", 50, 30 * DAY)
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    assert scan_compile_cache(root) == []  # a symlink is not an entry
    entries = scan_compile_cache(outside.parent)
    assert remove_entries(root, entries) == 0  # planned under another root: refused
    assert (outside / "inductor" / "kernel.so").exists()


def test_du_reports_the_compile_cache_outside_the_weight_ratio(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    _entry(_compile_root(volume), "vllm-key", 4096, 60)
    text = invoke(volume, "du", "--container-root", str(tmp_path / "container"))
    assert text.exit_code == 0, text.output
    assert "compile cache" in text.output and str(_compile_root(volume)) in text.output
    data = json.loads(invoke(volume, "du", "--json", "--container-root", str(tmp_path / "container")).output)
    assert data["compile_cache"] == {"root": str(_compile_root(volume)), "entries": 1, "bytes": 4096}
    assert data["physical_bytes"] == 0  # compiled kernels are not weights


def test_prune_older_than_evicts_old_compile_entries_and_dry_run_keeps_them(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    root = _compile_root(volume)
    _entry(root, "old", 100, 30 * DAY)
    _entry(root, "fresh", 100, 60)
    dry = invoke(volume, "prune", "--older-than", "14d", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "compile cache old" in dry.output and (root / "old").exists()
    done = invoke(volume, "prune", "--older-than", "14d", "--yes")
    assert done.exit_code == 0, done.output
    assert "removed 1 compile cache folder" in done.output
    assert sorted(p.name for p in root.iterdir()) == ["fresh"]
