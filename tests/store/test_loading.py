from __future__ import annotations

from pathlib import Path

from volcache.store.loading import Prefetch, choose_strategy, mount_of, start_prefetch, weight_files


def _mounts(tmp_path: Path, lines: str) -> str:
    f = tmp_path / "mounts"
    f.write_text(lines)
    return str(f)


def test_mount_of_picks_the_longest_matching_mount_point(tmp_path: Path) -> None:
    mounts = _mounts(tmp_path, "/dev/vda / ext4 rw 0 0\nmfs#vol /runpod-volume fuse.mfs rw 0 0\n")
    m = mount_of(Path("/runpod-volume/models/hub"), mounts)
    assert m is not None and m.point == "/runpod-volume" and m.is_network
    local = mount_of(Path("/usr/lib"), mounts)
    assert local is not None and local.fstype == "ext4" and not local.is_network
    nfs = mount_of(Path("/data/x"), _mounts(tmp_path, "srv:/e /data nfs4 rw 0 0\n"))
    assert nfs is not None and nfs.is_network


def _snapshot(tmp_path: Path) -> Path:
    blobs = tmp_path / "blobs"
    snap = tmp_path / "snapshots/abc"
    blobs.mkdir()
    snap.mkdir(parents=True)
    (blobs / "b1").write_bytes(b"x" * 3_000_000)
    (blobs / "b2").write_bytes(b"y" * 100)
    (snap / "model.safetensors").symlink_to(blobs / "b1")
    (snap / "config.json").symlink_to(blobs / "b2")
    return snap


def test_weight_files_are_resolved_blobs(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path)
    assert weight_files(snap) == [(tmp_path / "blobs/b1").resolve()]


def test_explicit_strategy_wins_and_auto_is_mmap_on_local_disk(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path)
    assert choose_strategy("read", snap) == "read"
    assert choose_strategy("auto", snap) in ("mmap", "prefetch")  # depends on what /tmp is here


def test_prefetch_reads_every_byte_in_chunks(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path)
    p = Prefetch(weight_files(snap), threads=3, chunk=1_000_000).start().wait(30)
    assert p.bytes_read == 3_000_000
    assert start_prefetch(snap, "mmap") is None


def test_the_prefetch_reads_only_what_a_diffusers_pipeline_opens(tmp_path: Path) -> None:
    """A whole diffusers repo (RunPod's cached models keep every file): the variant's files, no root checkpoint."""
    import json

    from volcache.store.selection import Selection

    snap = tmp_path / "snap"
    (snap / "unet").mkdir(parents=True)
    (snap / "vae").mkdir()
    (snap / "model_index.json").write_text(json.dumps({"_class_name": "X", "unet": ["d", "U"], "vae": ["d", "V"]}))
    for folder in ("unet", "vae"):
        (snap / folder / "config.json").write_text("{}")
        (snap / folder / "diffusion_pytorch_model.safetensors").write_bytes(b"0" * 300)
        (snap / folder / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"0" * 150)
    (snap / "sd_xl_base_1.0.safetensors").write_bytes(b"0" * 1000)
    names = lambda files: sorted(f.relative_to(snap).as_posix() for f in files)  # noqa: E731
    assert names(weight_files(snap)) == [
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    assert names(weight_files(snap, Selection(variant="fp16"))) == [
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    ]
    (snap / "model_index.json").write_text("{not json")  # the selection cannot decide: every weight file
    assert len(weight_files(snap)) == 5
