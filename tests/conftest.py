"""Shared fixtures: settings on a temporary volume, the Hub emulator, small repos."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from volcache import Settings

if TYPE_CHECKING:
    from tests.faults._support import TrialLog
    from volcache.testing import HubEmulator

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    vol = tmp_path / "volume"
    vol.mkdir()
    return vol


def make_settings(volume: Path, **overrides: object) -> Settings:
    env = {
        "VOLCACHE_VOLUME": str(volume),
        "VOLCACHE_FREE_MARGIN": "0",
        "VOLCACHE_LEASE_TIMEOUT": "5",
        "VOLCACHE_STALE_CACHES": "",
        "VOLCACHE_ASSUME_VOLUME": "1",  # a temporary folder stands for the network volume
        "HOME": str(volume.parent / "home"),
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return Settings.from_env(env)


def subprocess_env(volume: Path, **extra: str) -> dict[str, str]:
    """An environment for a child process: the volume, no real Hub, nothing inherited that pins caches."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "VOLCACHE_", "TRANSFORMERS_", "TORCH_HOME"))}
    env.update(
        VOLCACHE_VOLUME=str(volume),
        VOLCACHE_FREE_MARGIN="0",
        VOLCACHE_STALE_CACHES="",
        VOLCACHE_ASSUME_VOLUME="1",  # a temporary folder stands for the network volume
        VOLCACHE_EPHEMERAL=str(volume.parent / "ephemeral"),
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 300, check: bool = False
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "volcache.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"volcache {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


@pytest.fixture
def settings(volume: Path) -> Settings:
    return make_settings(volume)


TINY_FILES = {
    "config.json": 300,
    "tokenizer.json": 2_000,
    "model.safetensors": 400_000,
    "pytorch_model.bin": 400_000,
    "onnx/model.onnx": 100_000,
}
TINY_NEEDED_BYTES = 300 + 2_000 + 400_000


@pytest.fixture
def hub_root(tmp_path: Path) -> Path:
    from volcache.testing import write_random_repo

    root = tmp_path / "mirror"
    write_random_repo(root / "org" / "tiny", TINY_FILES, seed=1)
    return root


@pytest.fixture
def hub(hub_root: Path) -> Iterator[HubEmulator]:
    from volcache.testing import HubEmulator

    with HubEmulator(hub_root) as emulator:
        yield emulator


@pytest.fixture
def trial_log(request: pytest.FixtureRequest) -> TrialLog:
    """One JSON line per trial for `bench/reliability.py` (when VOLCACHE_FAULT_RESULTS is set)."""
    from tests.faults._support import TrialLog

    return TrialLog(request.node.nodeid)


class _FastTime:
    """`time` for the retry loops only: back-offs 20x shorter (the emulator's delays stay real)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds / 20, 0.5))


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shorten the retry back-offs of the store and of huggingface_hub, in this process."""
    import huggingface_hub.file_download
    import huggingface_hub.utils._http

    from volcache.store import hub as _hub
    from volcache.store import ranged as _ranged

    for module in (_hub, _ranged, huggingface_hub.file_download, huggingface_hub.utils._http):
        monkeypatch.setattr(module, "time", _FastTime())
