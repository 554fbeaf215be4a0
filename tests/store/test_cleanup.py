from __future__ import annotations

import os
from pathlib import Path

import pytest

from volcache import CleanupRefused, remove_stale_caches
from volcache.store.cleanup import check_deletable


def _tree(root: Path) -> None:
    (root / "hub/models--a--b/blobs").mkdir(parents=True)
    (root / "hub/models--a--b/blobs/x").write_bytes(b"w" * 1000)
    (root / "other.bin").write_bytes(b"z" * 500)


def test_deletes_listed_folder_and_reports_bytes(tmp_path: Path, volume: Path) -> None:
    stale = tmp_path / "models"
    _tree(stale)
    report = remove_stale_caches([stale], volume)
    assert not stale.exists()
    assert report.bytes_freed == 1500
    assert report.removed == ((stale, 1500),)


def test_missing_paths_are_ignored(tmp_path: Path, volume: Path) -> None:
    report = remove_stale_caches([tmp_path / "nope"], volume)
    assert report.removed == () and report.refused == ()


def test_symlink_into_the_volume_is_unlinked_never_followed(tmp_path: Path, volume: Path) -> None:
    weights = volume / "models/hub/models--a--b"
    weights.mkdir(parents=True)
    (weights / "model.safetensors").write_bytes(b"w" * 4096)
    link = tmp_path / "cache-link"
    link.symlink_to(volume / "models")
    report = remove_stale_caches([link], volume)
    assert not link.exists() and not link.is_symlink()
    assert (weights / "model.safetensors").read_bytes() == b"w" * 4096
    assert report.bytes_freed == 0


def test_symlink_inside_a_stale_tree_is_not_followed(tmp_path: Path, volume: Path) -> None:
    (volume / "keep.safetensors").write_bytes(b"k" * 100)
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "to-volume").symlink_to(volume)
    (stale / "to-file").symlink_to(volume / "keep.safetensors")
    remove_stale_caches([stale], volume)
    assert not stale.exists()
    assert (volume / "keep.safetensors").read_bytes() == b"k" * 100


@pytest.mark.parametrize("which", ["volume", "inside", "parent", "root"])
def test_refuses_the_volume_and_its_surroundings(tmp_path: Path, volume: Path, which: str) -> None:
    (volume / "models").mkdir()
    (volume / "models/w.bin").write_bytes(b"x")
    path = {"volume": volume, "inside": volume / "models", "parent": volume.parent, "root": Path("/")}[which]
    report = remove_stale_caches([path], volume)
    assert report.removed == ()
    assert len(report.refused) == 1
    assert (volume / "models/w.bin").exists()


def test_refuses_a_path_that_reaches_the_volume_through_dotdot(tmp_path: Path, volume: Path) -> None:
    sneaky = tmp_path / "x" / ".." / volume.name
    (tmp_path / "x").mkdir()
    with pytest.raises(CleanupRefused):
        check_deletable(sneaky, volume)


def test_refuses_relative_paths_and_mount_points(volume: Path) -> None:
    with pytest.raises(CleanupRefused, match="absolute"):
        check_deletable(Path("models"), volume)
    with pytest.raises(CleanupRefused, match="mount point"):
        check_deletable(Path("/proc"), volume)


def test_does_not_cross_into_a_mount_inside_a_stale_tree(tmp_path: Path, volume: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    import subprocess

    stale = tmp_path / "stale"
    inner = stale / "mnt"
    inner.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(inner)]).returncode != 0:
        pytest.skip("mount -t tmpfs is not permitted here")
    try:
        (inner / "keep").write_text("kept")
        report = remove_stale_caches([stale], volume)
        assert (inner / "keep").read_text() == "kept"
        assert report.skipped_mounts == (inner,)
    finally:
        subprocess.run(["umount", str(inner)])
