"""A small deployment, fetched once through the Hub emulator and copied per test (links kept as links)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.conftest import make_settings
from volcache import ModelStore, Settings
from volcache.cli import cli
from volcache.testing import HubEmulator, write_random_repo

# Weights over 1 MB: `doctor` ignores smaller files with a weight suffix.
MODELS: dict[str, dict[str, int]] = {
    "org/a": {"model.safetensors": 1_100_000, "tokenizer.json": 2_000},
    "org/b": {"model.safetensors": 1_200_000, "extra.safetensors": 300_000},
    "org/c": {"model.safetensors": 1_300_000},
}
# In the mirror but not on the volume: downloaded during a test.
LATER: dict[str, dict[str, int]] = {"org/d": {"model.safetensors": 1_000_000}}


@dataclasses.dataclass(frozen=True)
class Deployment:
    """A volume folder with org/a, org/b and org/c complete on it, and the mirror it came from."""

    volume: Path
    mirror: Path
    commits: dict[str, str]

    def settings(self, **env: object) -> Settings:
        return make_settings(self.volume, **env)

    def snapshot(self, model: str) -> Path:
        return ModelStore(self.settings()).snapshot_dir(model, self.commits[model])

    def weight_files(self) -> list[Path]:
        return sorted(p for m in self.commits for p in self.snapshot(m).glob("*.safetensors"))


@pytest.fixture(scope="session")
def ops_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ops-mirror")
    for i, (model, files) in enumerate({**MODELS, **LATER}.items()):
        write_random_repo(root / model, files, seed=10 + i)
    return root


@pytest.fixture(scope="session")
def template(ops_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    volume = tmp_path_factory.mktemp("ops-template") / "vol"
    volume.mkdir()
    with HubEmulator(ops_mirror) as hub:
        store = ModelStore(make_settings(volume, HF_ENDPOINT=hub.url))
        commits = {m: str(store.resolve(m).commit) for m in MODELS}
    return Deployment(volume, ops_mirror, commits)


@pytest.fixture
def deployment(template: Deployment, tmp_path: Path) -> Deployment:
    volume = tmp_path / "vol"
    shutil.copytree(template.volume, volume, symlinks=True)
    return dataclasses.replace(template, volume=volume)


@pytest.fixture
def container(tmp_path: Path) -> Path:
    """A fake container disk: an empty folder outside the volume."""
    root = tmp_path / "container"
    root.mkdir()
    return root


@pytest.fixture
def ops_hub(deployment: Deployment) -> Iterator[HubEmulator]:
    with HubEmulator(deployment.mirror) as hub:
        yield hub


def invoke(volume: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run a volcache command in-process (no terminal: stdin and stderr are not TTYs)."""
    full = {
        "VOLCACHE_VOLUME": str(volume),
        "VOLCACHE_FREE_MARGIN": "0",
        "VOLCACHE_LEASE_TIMEOUT": "5",
        "VOLCACHE_STALE_CACHES": "",
        "HOME": str(volume.parent / "home"),
        **(env or {}),
    }
    return CliRunner().invoke(cli, list(args), env=full)


def age(path: Path, seconds: float) -> None:
    """Set `path`'s mtime `seconds` into the past."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    when = path.stat().st_mtime - seconds
    os.utime(path, (when, when))
