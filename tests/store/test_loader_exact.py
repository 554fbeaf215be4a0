"""Nothing downloaded is dead weight: each fixture is fetched through the emulator, then loaded by
its real loader under strace; every weight file on the volume was opened, and the load worked.

weight bytes on the volume ÷ weight bytes the loader opened = 1.00 on every layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import make_settings, subprocess_env
from volcache import ModelStore
from volcache._selection import is_weight_file
from volcache.testing import HubEmulator
from volcache.testing.loaders import strace_available, trace_load

pytestmark = pytest.mark.skipif(not strace_available(), reason="strace is missing or may not trace here")

# (repo, loader, environment of the request)
CASES = [
    ("org/sharded", "transformers", {}),
    ("org/original", "transformers", {}),
    ("org/st-exports", "sentence-transformers", {}),
    ("org/tiny-sd", "diffusers", {}),
    ("org/tiny-sd", "diffusers", {"MODEL_VARIANT": "fp16"}),
    ("org/tiny-gguf", "gguf", {"MODEL_FILE": "*Q8_0.gguf"}),
    ("org/tiny-gguf", "gguf", {"MODEL_FILE": "*F16*"}),
]


def _weights_on_volume(snapshot: Path) -> dict[Path, int]:
    """Every weight file the snapshot links to, by its blob, with its size."""
    found = {}
    for root, _dirs, files in os.walk(snapshot):
        for name in files:
            if is_weight_file(name):
                blob = Path(os.path.realpath(Path(root) / name))
                found[blob] = blob.stat().st_size
    return found


@pytest.mark.parametrize(("repo", "loader", "request_env"), CASES, ids=lambda v: str(v) if v else "default")
def test_every_downloaded_weight_is_opened_by_the_loader(
    layouts_hub: HubEmulator, tmp_path: Path, repo: str, loader: str, request_env: dict[str, str]
) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    store = ModelStore(make_settings(volume, HF_ENDPOINT=layouts_hub.url, **request_env))
    plan = store.plan(repo)
    resolution = store.resolve(repo)
    assert resolution.downloaded_bytes == plan.kept_bytes  # the plan's total is what was downloaded
    on_volume = _weights_on_volume(resolution.path)
    assert on_volume and sum(on_volume.values()) == plan.kept_weight_bytes < plan.total_weight_bytes

    env = subprocess_env(volume, HF_HUB_OFFLINE="1", VOLCACHE_TEST_VARIANT=request_env.get("MODEL_VARIANT", ""))
    trace = trace_load(loader, resolution.path, env)

    assert "loaded" in trace.stdout  # nothing was missing: the loader built the model and ran it
    never_opened = sorted(str(b) for b in on_volume if b not in trace.opened)
    assert never_opened == [], f"downloaded but never opened: {never_opened}"
    opened_bytes = sum(size for blob, size in on_volume.items() if blob in trace.opened)
    assert sum(on_volume.values()) / opened_bytes == 1.00
