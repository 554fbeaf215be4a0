"""Each benchmark section runs in its smallest configuration; the FUSE volume serves correct bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import _fuse, cold_start, disk, gpu, netfs, scale
from bench.__main__ import main as bench_main
from bench._common import Options, count_weights, sha256
from tests.conftest import REPO_ROOT

FUSE_MISSING = _fuse.available()
needs_fuse = pytest.mark.skipif(FUSE_MISSING is not None, reason=f"FUSE cannot be mounted here: {FUSE_MISSING}")


def _opts(tmp_path: Path) -> Options:
    return Options(quick=True, repeats=1, out=tmp_path / "results")


def test_weights_are_counted_by_content_each_inode_once(tmp_path: Path) -> None:
    blob = tmp_path / "a" / "blob"
    blob.parent.mkdir()
    blob.write_bytes(os.urandom(4096))
    (tmp_path / "a" / "hardlink").hardlink_to(blob)
    (tmp_path / "a" / "model.safetensors").symlink_to(blob)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "copy.bin").write_bytes(blob.read_bytes())
    (tmp_path / "b" / "other").write_bytes(os.urandom(4096))
    counted = count_weights({sha256(blob): 4096}, tmp_path / "a", tmp_path / "b")
    assert (counted.bytes, counted.files) == (8192, 2)


@needs_fuse
def test_the_fuse_volume_serves_the_bytes_links_and_folders_of_its_source(tmp_path: Path) -> None:
    source, mnt = tmp_path / "source", tmp_path / "mnt"
    (source / "blobs").mkdir(parents=True)
    data = os.urandom(1_000_000)
    (source / "blobs" / "x").write_bytes(data)
    (source / "model.safetensors").symlink_to("blobs/x")
    volume = netfs.NetworkVolume(latency=0.0005, stream_bandwidth=1e9, bandwidth=2e9)
    with netfs.mounted(source, mnt, volume, tmp_path) as stats:
        assert sorted(os.listdir(mnt)) == ["blobs", "model.safetensors"]
        assert os.readlink(mnt / "model.safetensors") == "blobs/x"
        assert (mnt / "model.safetensors").read_bytes() == data
        assert any(line.split()[2] == _fuse.FSTYPE for line in Path("/proc/mounts").read_text().splitlines())
        counts = netfs._fuse_counts(stats)
        assert counts["read_bytes"] >= len(data) and counts["max_read_size"] <= volume.max_read
    assert not os.listdir(mnt)  # unmounted


@needs_fuse
def test_netfs_smallest(tmp_path: Path) -> None:
    section = netfs.run(_opts(tmp_path), hidden=64, layers=1, strategies=("auto",), worker=False, local=False, sweep=())
    assert section.data["auto_on_fuse"] == "prefetch"
    assert section.data["network"]["auto"][0]["bytes_read"] >= section.data["model_bytes"]
    assert "÷ floor" in section.markdown and "auto_over_floor" in section.data["verdicts"]


def test_gpu_harness_on_the_cpu(tmp_path: Path) -> None:
    """The GPU section's runs, on the CPU: every weight reaches the device, and the floor copies every byte."""
    latencies = () if FUSE_MISSING else (0.001,)
    section = gpu.run(_opts(tmp_path), device="cpu", hidden=64, layers=1, latencies=latencies, strategies=("auto",))
    volumes = section.data["volumes"]
    assert next(iter(volumes)) == "local disk" and len(volumes) == 1 + len(latencies)
    for runs in volumes.values():
        assert runs["auto"][0]["device"] == "cpu"
        assert all(r[0]["bytes"] >= section.data["model_bytes"] for n, r in runs.items() if n.startswith("floor-"))
    assert "Device `cpu`" in section.markdown and "÷ floor" in section.markdown
    assert set(section.data["verdicts"]) == set(volumes)


def test_gpu_section_without_that_device_is_skipped_with_the_reason(tmp_path: Path) -> None:
    section = gpu.run(_opts(tmp_path), device="cuda:99")
    assert section.data["skipped"].startswith("no cuda:99 device here")
    assert "Skipped:" in section.markdown


def test_disk_smallest_shows_the_seed_copies(tmp_path: Path) -> None:
    section = disk.run(_opts(tmp_path), scenarios=(disk.SEED_BEFORE,))
    first = section.data["rows"][0]
    # one copy on the container disk, two on the volume: copytree turned the snapshot links into files
    assert round(first["ratio"], 2) == 3.0
    assert (tmp_path / "results" / "disk.png").exists()


def test_cold_start_smallest(tmp_path: Path) -> None:
    section = cold_start.run(_opts(tmp_path), contenders=("volcache",), scenarios=("cold volume",), floor=False)
    run = section.data["runs"]["cold volume"]["volcache"][0]
    assert run["seconds"] > 0 and run["hub_bytes"] > 0
    assert set(run["started"]["load_s"]) == {"import", "construct", "prefetch_wait"}


def test_scale_smallest(tmp_path: Path) -> None:
    section = scale.run(_opts(tmp_path), workers=(2,))
    assert section.data["hub_ratio"][2] == pytest.approx(1.0, abs=0.005)


def test_unknown_sections_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_main(["nosuch"])
    assert "unknown section" in capsys.readouterr().err


def test_python_dash_m_bench_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "--quick" in proc.stdout


@pytest.mark.parametrize("volume", [None, "/runpod-volume/models", "/tmp/models", "~/.cache/huggingface"])
def test_the_seed_baselines_refuse_to_copy_or_delete_outside_the_benchmarks_temp_folders(
    tmp_path: Path, volume: str | None
) -> None:
    """seed_before copytrees and seed_after rmtrees whole caches: never on a real volume or cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    env["BENCH_BUILD_CACHE"] = str(tmp_path / "build")
    if volume is not None:
        env["BENCH_VOLUME_CACHE"] = os.path.expanduser(volume)
    for module, args in (("bench.baselines.seed_before", ["start"]), ("bench.baselines.seed_after", [])):
        proc = subprocess.run(
            [sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode != 0
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("bench baseline: BENCH_VOLUME_CACHE"), proc.stderr[-500:]
