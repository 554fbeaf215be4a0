"""Pinning must happen before huggingface_hub is imported; tested in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env


def _run(code: str, volume: Path) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(volume, HOME=str(volume.parent / "home"))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_pin_then_import_lands_on_the_volume(volume: Path) -> None:
    code = (
        "import volcache, os; s = volcache.Settings.from_env(); volcache.pin(s); volcache.pin(s);"
        "import huggingface_hub.constants as c;"
        "print(c.HF_HOME); print(c.HF_HUB_CACHE); print(os.environ['TORCH_HOME']);"
        "print(os.environ['HF_MODULES_CACHE']); print(c.HF_HUB_DISABLE_TELEMETRY); print(c.HF_XET_CACHE)"
    )
    proc = _run(code, volume)
    assert proc.returncode == 0, proc.stderr
    home, hub, torch_home, modules, telemetry, xet = proc.stdout.split()
    assert home == str(volume / "models") and hub == str(volume / "models/hub")
    assert torch_home == str(volume / "models/torch") and modules == str(volume / "models/modules")
    assert telemetry == "True"
    assert not xet.startswith(str(volume)), "Xet scratch must stay off the shared volume"


@pytest.mark.parametrize(
    "early",
    ["import huggingface_hub.constants", "import transformers", "from huggingface_hub import snapshot_download"],
)
def test_import_then_pin_fails_loudly(volume: Path, early: str) -> None:
    proc = _run(f"{early}; import volcache; volcache.pin(volcache.Settings.from_env())", volume)
    assert proc.returncode != 0
    assert "PinError" in proc.stderr
    assert "huggingface_hub was imported before volcache.pin()" in proc.stderr
    assert str(volume / "models/hub") in proc.stderr  # names the wanted path
    assert "Fix:" in proc.stderr


def test_bare_lazy_import_has_not_read_the_paths_yet(volume: Path) -> None:
    """`import huggingface_hub` is lazy: the constants load on first use, after pin()."""
    code = (
        "import huggingface_hub, volcache; volcache.pin(volcache.Settings.from_env());"
        "import huggingface_hub.constants as c; print(c.HF_HUB_CACHE)"
    )
    proc = _run(code, volume)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(volume / "models/hub")


def test_import_after_env_already_pinned_is_accepted(volume: Path) -> None:
    """A Dockerfile that sets the variables pins before any import; pin() then agrees."""
    env = subprocess_env(volume, HF_HOME=str(volume / "models"), HF_HUB_CACHE=str(volume / "models/hub"))
    proc = subprocess.run(
        [sys.executable, "-c", "import transformers, volcache as v; v.pin(v.Settings.from_env()); print('ok')"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
