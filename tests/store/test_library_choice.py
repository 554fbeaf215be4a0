"""volcache's choice equals the library's own, on the same repos: each library downloads through the
emulator with its public entry point (diffusers `DiffusionPipeline.download`, transformers
`from_pretrained`, sentence-transformers `SentenceTransformer`), and the weight files it fetched
are compared with the plan's. vLLM is not installed here; its rule (the index's shards only, as
`filter_duplicate_safetensors_files` does) is the transformers one on these layouts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_settings, subprocess_env
from volcache import ModelStore
from volcache.store.selection import Selection, is_weight_file
from volcache.testing import HubEmulator

# Each line: repo, variant ("" for none), library. The child prints the weight files it downloaded.
_CHILD = """
import json, os, sys
from pathlib import Path
cache = Path(sys.argv[1])
out = {}
for i, line in enumerate(sys.argv[2:]):
    repo, variant, library = line.split(",")
    folder = cache / str(i)
    if library == "diffusers":
        from diffusers import DiffusionPipeline
        snapshot = Path(DiffusionPipeline.download(repo, cache_dir=folder, variant=variant or None))
    elif library == "transformers":
        from transformers import AutoModelForCausalLM
        AutoModelForCausalLM.from_pretrained(repo, cache_dir=folder)
        snapshot = next(folder.glob("models--*/snapshots/*"))
    else:
        from sentence_transformers import SentenceTransformer
        SentenceTransformer(repo, cache_folder=str(folder), device="cpu")
        snapshot = next(folder.glob("models--*/snapshots/*"))
    out[line] = sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file())
print(json.dumps(out))
"""
CASES = [
    ("org/tiny-sd", "", "diffusers"),
    ("org/tiny-sd", "fp16", "diffusers"),
    ("org/sharded", "", "transformers"),
    ("org/original", "", "transformers"),
    ("org/st-exports", "", "sentence-transformers"),
]


@pytest.fixture
def library_downloads(layouts_hub: HubEmulator, tmp_path: Path) -> dict[str, list[str]]:
    """The files each library downloaded, by case, from one child process."""
    env = subprocess_env(tmp_path / "unused", HF_ENDPOINT=layouts_hub.url, HF_HOME=str(tmp_path / "hf-home"))
    lines = [",".join(case) for case in CASES]
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "caches"), *lines],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, list[str]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_volcache_selects_the_weights_each_library_downloads(
    layouts_hub: HubEmulator, volume: Path, library_downloads: dict[str, list[str]]
) -> None:
    store = ModelStore(make_settings(volume, HF_ENDPOINT=layouts_hub.url))
    for repo, variant, library in CASES:
        plan = store.plan(repo, selection=Selection(variant=variant or None))
        ours = sorted(f.path for f in plan.kept if f.is_weight)
        theirs = sorted(p for p in library_downloads[f"{repo},{variant},{library}"] if is_weight_file(p))
        assert ours == theirs, f"{repo} ({library}, variant {variant or 'none'})"
