"""Nothing downloaded is dead weight: each fixture is fetched through the emulator, then loaded by
its real loader under strace; every weight file on the volume was opened, and the load worked.

weight bytes on the volume ÷ weight bytes the loader opened = 1.00 on every layout.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from tests.conftest import make_settings, subprocess_env
from volcache import ModelStore
from volcache.store.selection import Plan, is_weight_file
from volcache.testing import HubEmulator, mirror_root_with
from volcache.testing.loaders import LoadJob, LoadTrace, strace_available, trace_loads

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


@dataclasses.dataclass(frozen=True)
class Fetched:
    """One case after `ModelStore.resolve`: its snapshot, plan and download, and the shared trace."""

    plan: Plan
    snapshot: Path
    downloaded: int
    trace: LoadTrace


@pytest.fixture(scope="module")
def fetched(layout_folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[int, Fetched]:
    """Every case fetched onto its own volume, then all loaded in one traced process."""
    tmp = tmp_path_factory.mktemp("loader-exact")
    done = []
    with HubEmulator(mirror_root_with(tmp, layout_folders)) as hub:
        for number, (repo, _loader, request_env) in enumerate(CASES):
            volume = tmp / f"volume-{number}"
            volume.mkdir()
            store = ModelStore(make_settings(volume, HF_ENDPOINT=hub.url, **request_env))
            plan = store.plan(repo)
            resolution = store.resolve(repo)
            done.append((plan, resolution.path, resolution.downloaded_bytes))
    jobs = [
        LoadJob(loader, snap, env.get("MODEL_VARIANT", ""))
        for (_, loader, env), (_, snap, _) in zip(CASES, done, strict=True)
    ]
    trace = trace_loads(jobs, subprocess_env(tmp / "no-volume", HF_HUB_OFFLINE="1"))
    assert trace.stdout.count("loaded") == len(jobs), trace.stdout  # every load built its model and ran it
    return {i: Fetched(plan, snap, downloaded, trace) for i, (plan, snap, downloaded) in enumerate(done)}


def _weights_on_volume(snapshot: Path) -> dict[Path, int]:
    """Every weight file the snapshot links to, by its blob, with its size."""
    found = {}
    for root, _dirs, files in os.walk(snapshot):
        for name in files:
            if is_weight_file(name):
                blob = Path(os.path.realpath(Path(root) / name))
                found[blob] = blob.stat().st_size
    return found


@pytest.mark.parametrize("number", range(len(CASES)), ids=[f"{r}-{loader}-{e or 'default'}" for r, loader, e in CASES])
def test_every_downloaded_weight_is_opened_by_the_loader(fetched: dict[int, Fetched], number: int) -> None:
    case = fetched[number]
    assert case.downloaded == case.plan.kept_bytes  # the plan's total is what was downloaded
    on_volume = _weights_on_volume(case.snapshot)
    assert on_volume and sum(on_volume.values()) == case.plan.kept_weight_bytes < case.plan.total_weight_bytes
    never_opened = sorted(str(b) for b in on_volume if b not in case.trace.opened)
    assert never_opened == [], f"downloaded but never opened: {never_opened}"
    opened_bytes = sum(size for blob, size in on_volume.items() if blob in case.trace.opened)
    assert sum(on_volume.values()) / opened_bytes == 1.00
