"""`volcache du`: ratio 1.00 on a clean deployment, 2.00 after a planted copy; links never double-count."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tests.faults._support import faults_trial
from tests.ops.conftest import Deployment, invoke
from volcache.ops.du import default_locations, measure


def _du(d: Deployment, container: Path, *paths: str) -> dict[str, Any]:
    result = invoke(d.volume, "du", "--json", "--container-root", str(container), *paths)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_clean_deployment_has_ratio_one(deployment: Deployment, container: Path) -> None:
    data = _du(deployment, container)
    weights = sum(p.stat().st_size for p in deployment.weight_files())
    assert data["ratio"] == 1.0
    assert data["physical_bytes"] == data["unique_bytes"] == weights
    volume, disk = data["locations"]
    assert volume["name"] == "volume" and volume["files"] == 4
    assert disk["physical_bytes"] == 0 and data["duplicates"] == []


def test_planted_copy_doubles_the_ratio_and_is_named(deployment: Deployment, container: Path) -> None:
    models = container / "tmp-models"  # the seed's build-time copy
    models.mkdir()
    for weight in deployment.weight_files():
        copy = models / f"{weight.parent.parent.parent.name}-{weight.name}"
        shutil.copyfile(weight, copy)  # volcache: ignore[VC101] the planted duplicate this test measures
    data = _du(deployment, container)
    assert data["ratio"] == 2.0
    disk = data["locations"][1]
    assert disk["files"] == 4
    groups = data["duplicates"]
    assert len(groups) == 4
    assert all(any(str(models) in p for p in g["paths"]) for g in groups)

    text = invoke(deployment.volume, "du", "--container-root", str(container)).stdout
    assert "ratio 2.00" in text and "duplicate" in text


def test_hard_links_count_once_and_symlinks_are_not_followed(deployment: Deployment, container: Path) -> None:
    weight = deployment.weight_files()[0]
    os.link(weight.resolve(), container / "hardlink.safetensors")
    os.symlink(weight, container / "link.safetensors")
    os.symlink(deployment.volume, container / "volume-link")  # a link to a folder is not entered
    data = _du(deployment, container)
    assert data["ratio"] == 1.0
    assert data["locations"][1]["files"] == 0


def test_paths_given_are_their_own_location(deployment: Deployment, container: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copyfile(deployment.weight_files()[0], extra / "copy.bin")  # volcache: ignore[VC101] the planted duplicate
    data = _du(deployment, container, str(extra))
    names = [loc["name"] for loc in data["locations"]]
    assert names == ["volume", "container disk", str(extra)]
    assert data["locations"][2]["files"] == 1
    assert 1.0 < data["ratio"] < 2.0


def test_same_size_different_content_is_not_a_duplicate(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(b"a" * 5000)
    (tmp_path / "b.safetensors").write_bytes(b"b" * 5000)
    (tmp_path / "c.gguf").write_bytes(b"a" * 5000)
    report = measure(default_locations(tmp_path / "none", tmp_path / "none", [tmp_path]))
    assert report.physical_bytes == 15000 and report.unique_bytes == 10000
    assert [sorted(p.name for p in g.paths) for g in report.duplicates] == [["a.safetensors", "c.gguf"]]


@faults_trial("12.12", "du: package data, and the summary")
def test_package_data_is_not_counted_and_the_summary_is_short(deployment: Deployment, tmp_path: Path) -> None:
    image = tmp_path / "image"
    site = image / "site-packages/scipy/io/tests/data"
    site.mkdir(parents=True)
    (site / "a.npz").write_bytes(b"s" * 2_000_000)
    data = _du(deployment, image)
    disk = next(loc for loc in data["locations"] if loc["name"] == "container disk")
    assert disk["physical_bytes"] == 0 and data["ratio"] == 1.0
    copies = image / "copies"
    copies.mkdir()
    for n in range(8):  # eight distinct duplicated files: eight groups
        content = bytes([n]) * 1_000_001
        (copies / f"w{n}.safetensors").write_bytes(content)
        (copies / f"w{n}-copy.safetensors").write_bytes(content)
    text = invoke(deployment.volume, "du", "--container-root", str(image)).stdout
    groups = [line for line in text.splitlines() if line.startswith("duplicate ")]
    assert len(groups) == 5 and "3 smaller duplicate groups" in text and "--all" in text
    every = invoke(deployment.volume, "du", "--all", "--container-root", str(image)).stdout
    assert len([line for line in every.splitlines() if line.startswith("duplicate ")]) == 8
