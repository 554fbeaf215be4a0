"""`volcache doctor`: fail-soft probes; a stray weight on the container disk and a volume without
symlinks both fail; the flock probe says the lease does not rely on flock."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli, subprocess_env
from tests.faults._support import faults_trial
from tests.ops.conftest import Deployment, invoke
from volcache.ops.doctor import DoctorContext, Probe, run_doctor

FAST = ("--skip", "gpu", "--skip", "cache-paths")


def _doctor(volume: Path, *args: str) -> tuple[int, dict[str, Probe]]:
    result = invoke(volume, "doctor", "--json", *args)
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["ok"] == (result.exit_code == 0)
    return result.exit_code, {p["name"]: Probe(**p) for p in data["probes"]}


def test_clean_deployment_passes(deployment: Deployment, container: Path) -> None:
    code, probes = _doctor(deployment.volume, "--container-root", str(container), *FAST)
    assert code == 0, probes
    assert probes["container-weights"].status == "ok"
    assert probes["symlinks"].status == "ok"
    assert probes["volume"].status == "warn"  # a temp folder is not a mount point
    assert probes["models"].status == "ok" and "3 complete snapshots" in probes["models"].detail
    assert probes["runpod-cache"].status == "ok"
    assert {"volume-space", "container-space"} <= set(probes)


def test_stray_weight_on_the_container_disk_fails(deployment: Deployment, container: Path) -> None:
    stray = container / "models" / "model.safetensors"  # the seed's /tmp/models
    stray.parent.mkdir()
    shutil.copyfile(deployment.weight_files()[0], stray)  # volcache: ignore[VC101] a planted stray copy
    (container / "small.bin").write_bytes(b"x" * 100)  # below the threshold: not flagged
    code, probes = _doctor(deployment.volume, "--container-root", str(container), *FAST)
    assert code == 1
    found = probes["container-weights"]
    assert found.status == "fail" and str(stray) in found.detail and "small.bin" not in found.detail
    assert "volcache audit" in found.fix

    text = invoke(deployment.volume, "doctor", "--container-root", str(container), *FAST)
    assert text.exit_code == 1
    assert any(line.startswith("FAIL  container-weights") for line in text.stdout.splitlines())


def test_the_volume_itself_is_not_a_stray(deployment: Deployment) -> None:
    """The volume lies inside the container root here; it is skipped, not reported."""
    code, probes = _doctor(deployment.volume, "--container-root", str(deployment.volume.parent), *FAST)
    assert probes["container-weights"].status == "ok", probes["container-weights"]
    assert code == 0


def test_volume_without_symlink_support_fails(
    deployment: Deployment, container: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_symlinks(src: str, dst: Path) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    code, probes = _doctor(deployment.volume, "--container-root", str(container), *FAST)
    assert code == 1
    assert probes["symlinks"].status == "fail" and "second copy" in probes["symlinks"].detail


def test_vfat_volume_without_symlinks(tmp_path: Path, container: Path) -> None:
    """The same on a real filesystem without symlinks, where this machine can mount one."""
    mkfs = shutil.which("mkfs.vfat") or shutil.which("mkfs.fat")
    if mkfs is None or os.geteuid() != 0:
        pytest.skip("needs mkfs.vfat (dosfstools) and root to mount a loop image")
    image, mnt = tmp_path / "vfat.img", tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "4M", str(image)], check=True)
    subprocess.run([mkfs, str(image)], check=True, capture_output=True)
    if subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("this machine does not allow mounting a vfat loop image")
    try:
        code, probes = _doctor(mnt, "--container-root", str(container), *FAST)
        assert probes["symlinks"].status == "fail" and code == 1
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_flock_probe_states_the_lease_does_not_depend_on_it(deployment: Deployment) -> None:
    (probe,) = run_doctor(DoctorContext(deployment.settings()), skip=_all_but("flock"))
    assert probe.status == "ok" and "excludes" in probe.detail
    assert "does not depend on flock" in probe.detail


def test_missing_volume_fails_and_a_crashing_probe_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from volcache.ops import doctor

    def boom(ctx: DoctorContext) -> list[Probe]:
        raise RuntimeError("boom")

    monkeypatch.setitem(doctor.PROBES, "runpod-cache", boom)
    settings = Deployment(tmp_path / "absent", tmp_path, {}).settings()
    probes = {p.name: p for p in run_doctor(DoctorContext(settings, ()), skip=("gpu", "cache-paths"))}
    assert probes["volume"].status == "fail" and "does not exist" in probes["volume"].detail
    assert probes["symlinks"].status == probes["flock"].status == "warn"  # not tested, not failed
    assert probes["runpod-cache"].status == "warn" and "boom" in probes["runpod-cache"].detail


def test_cache_paths_compares_a_fresh_process_with_the_pinned_paths(deployment: Deployment, container: Path) -> None:
    settings = deployment.settings()
    code, probes = _doctor(deployment.volume, "--container-root", str(container), "--skip", "gpu")
    paths = probes["cache-paths"]
    assert paths.status == "warn" and "HF_HUB_CACHE" in paths.detail  # not pinned in this environment
    assert f"ENV HF_HUB_CACHE={settings.hub_cache}" in paths.fix
    assert code == 0  # a warning, not a failure
    # A process whose environment pins the caches (and has imported no Hugging Face library yet).
    pinned = {"HF_HOME": str(settings.home), "HF_HUB_CACHE": str(settings.hub_cache)}
    pinned |= {"TORCH_HOME": str(settings.torch_home), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env = subprocess_env(deployment.volume, **pinned)
    proc = run_cli("doctor", "--json", "--skip", "gpu", "--container-root", str(container), env=env)
    data = {p["name"]: p for p in json.loads(proc.stdout)["probes"]}
    assert data["cache-paths"]["status"] == "ok", data["cache-paths"]
    assert proc.returncode == 0


def test_gpu_probe_is_none_without_devices_and_never_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from volcache.ops import doctor

    ctx = DoctorContext(Deployment(tmp_path, tmp_path, {}).settings())
    monkeypatch.setattr(doctor, "gpu_device_nodes", lambda: [])
    (probe,) = doctor.probe_gpu(ctx)
    assert probe.status == "warn" and probe.detail.startswith("none")
    monkeypatch.setattr(doctor, "gpu_device_nodes", lambda: ["/dev/nvidia0"])
    monkeypatch.setattr(doctor, "_torch_gpus", lambda: "1 GPU(s): NVIDIA H100")
    assert doctor.probe_gpu(ctx)[0] == Probe("gpu", "ok", "torch sees 1 GPU(s): NVIDIA H100.")
    monkeypatch.setattr(doctor, "_torch_gpus", lambda: "")
    monkeypatch.setattr(doctor, "_nvidia_smi", lambda: "1 GPU(s): NVIDIA H100, 81559 MiB")
    (probe,) = doctor.probe_gpu(ctx)
    assert probe.status == "warn" and "nvidia-smi lists" in probe.detail


def _all_but(name: str) -> list[str]:
    from volcache.ops.doctor import PROBES

    return [p for p in PROBES if p != name]


def _package_tree(root: Path) -> None:
    """What an ordinary image holds: scipy's and torch's test data, with weight suffixes, in site-packages."""
    site = root / "usr/lib/python3.11/site-packages"
    (site / "scipy/io/tests/data").mkdir(parents=True)
    (site / "scipy/io/tests/data/big.npz").write_bytes(b"s" * 2_000_000)
    (site / "torch/testing/_internal/data").mkdir(parents=True)
    (site / "torch/testing/_internal/data/legacy.pt").write_bytes(b"t" * 1_500_000)
    (root / "opt/conda/pkgs/numpy-1/info/test").mkdir(parents=True)
    (root / "opt/conda/pkgs/numpy-1/info/test/arr.npy.npz").write_bytes(b"n" * 1_200_000)
    (root / "app").mkdir()
    (root / "app/tiny.bin").write_bytes(b"x" * 100)


@faults_trial("12.12", "doctor: package data vs a planted checkpoint")
def test_package_data_is_not_weights_but_a_planted_checkpoint_is(deployment: Deployment, tmp_path: Path) -> None:
    image = tmp_path / "image"
    _package_tree(image)
    code, probes = _doctor(deployment.volume, "--container-root", str(image), *FAST)
    assert probes["container-weights"].status == "ok", probes["container-weights"]
    model = image / "usr/lib/python3.11/site-packages/mypkg/model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "pytorch_model.bin").write_bytes(b"w" * 5000)  # small, but in a model folder
    (image / "app/model.safetensors").write_bytes(b"w" * 100)  # a weight wherever it is
    code, probes = _doctor(deployment.volume, "--container-root", str(image), *FAST)
    found = probes["container-weights"]
    assert code == 1 and found.status == "fail"
    assert "model.safetensors" in found.detail and "pytorch_model.bin" in found.detail
    assert "npz" not in found.detail and ".pt" not in found.detail.replace(".pth", "")
