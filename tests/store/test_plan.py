"""`fetch --plan` and selections end to end: requests made, bytes downloaded, records, `ls`, misses, GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import make_settings, run_cli, subprocess_env
from volcache import ModelStore, OfflineMiss, Selection, SelectionError
from volcache.store.layout import VolumeLayout
from volcache.store.record import read_record
from volcache.testing import HubEmulator

DECIDING = {
    "org/tiny-sd": {"model_index.json"},
    "org/sharded": {"model.safetensors.index.json"},
    "org/st-exports": {"modules.json"},
    "org/original": set(),
}


def _store(volume: Path, hub: HubEmulator, **env: str) -> ModelStore:
    return ModelStore(make_settings(volume, HF_ENDPOINT=hub.url, **env))


def _resolve_paths(hub: HubEmulator, repo: str) -> list[tuple[str, str]]:
    """(method, file path) of every resolve/ request the emulator answered for `repo`."""
    prefix = f"/{repo}/resolve/"
    return [(method, path.split("/", 5)[-1]) for method, path, _ in hub.stats.log if path.startswith(prefix)]


@pytest.mark.parametrize("repo", sorted(DECIDING))
def test_plan_reads_only_the_listing_and_the_deciding_files_and_its_total_is_what_fetch_downloads(
    layouts_hub: HubEmulator, volume: Path, repo: str
) -> None:
    store = _store(volume, layouts_hub)
    plan = store.plan(repo)
    api = [path for _, path, _ in layouts_hub.stats.log if path.startswith("/api/")]
    assert len(api) == 2 and "/revision/main" in api[0] and "/tree/" in api[1]
    assert _resolve_paths(layouts_hub, repo) == [("GET", p) for p in sorted(DECIDING[repo])]
    assert not (volume / "models").exists() or not any((volume / "models").rglob("*.safetensors"))

    layouts_hub.reset_stats()
    resolution = store.resolve(repo)
    assert resolution.downloaded_bytes == plan.kept_bytes
    fetched = {path for method, path in _resolve_paths(layouts_hub, repo) if method == "GET"}
    assert fetched == plan.kept_paths | DECIDING[repo]


def test_a_second_variant_downloads_only_what_is_missing_and_gets_its_own_record(
    layouts_hub: HubEmulator, volume: Path
) -> None:
    plain = _store(volume, layouts_hub).resolve("org/tiny-sd")
    fp16_store = _store(volume, layouts_hub, MODEL_VARIANT="fp16")
    plan = fp16_store.plan("org/tiny-sd")
    fp16 = fp16_store.resolve("org/tiny-sd")
    assert fp16.path == plain.path and fp16.selection == Selection(variant="fp16")
    layout = VolumeLayout(volume / "models/hub", volume / "models/.volcache")
    first = read_record(layout.record("org/tiny-sd", plain.commit or ""))
    assert first is not None
    shared = {f.path for f in first.files}
    missing = sum(f.size for f in plan.kept if f.path not in shared)
    assert 0 < fp16.downloaded_bytes == missing < plan.kept_bytes  # configs and tokenizer were already there
    paths = layout.commit_records("org/tiny-sd", fp16.commit or "")
    records = [read_record(p) for p in paths]
    assert [r.selection.label for r in records if r] == ["default", "fp16"]

    env = subprocess_env(volume, HF_ENDPOINT=layouts_hub.url)
    rows = json.loads(run_cli("ls", "--json", env=env, check=True).stdout)
    assert [row["selections"] for row in rows] == [["default", "fp16"]]
    assert "default,fp16" in run_cli("ls", env=env, check=True).stdout


def test_a_request_the_record_does_not_cover_is_a_miss(layouts_hub: HubEmulator, volume: Path) -> None:
    _store(volume, layouts_hub).resolve("org/tiny-sd")
    layouts_hub.reset_stats()
    assert _store(volume, layouts_hub, HF_HUB_OFFLINE="1").resolve("org/tiny-sd").source == "volume"
    with pytest.raises(OfflineMiss):
        _store(volume, layouts_hub, HF_HUB_OFFLINE="1", MODEL_VARIANT="fp16").resolve("org/tiny-sd")
    assert layouts_hub.stats.requests == 0


def test_gguf_needs_a_file_and_then_downloads_that_file_only(layouts_hub: HubEmulator, volume: Path) -> None:
    env = subprocess_env(volume, HF_ENDPOINT=layouts_hub.url)
    refused = run_cli("fetch", "org/tiny-gguf", env=env)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "MODEL_FILE" in lines[0], refused.stderr
    for choice in ("F32", "Q8_0", "F16", "tiny-llama-F16-00001-of-00002.gguf, 2 parts"):
        assert choice in lines[0]
    assert not list(volume.rglob("*.gguf"))

    layouts_hub.reset_stats()
    done = run_cli("fetch", "org/tiny-gguf", "--file", "*F16*", env=env, check=True)
    snapshot = Path(done.stdout.strip().splitlines()[-1])
    assert sorted(p.name for p in snapshot.rglob("*.gguf")) == [
        "tiny-llama-F16-00001-of-00002.gguf",
        "tiny-llama-F16-00002-of-00002.gguf",
    ]
    downloads = {p.rsplit("/", 1)[-1] for p in layouts_hub.stats.per_file}
    assert downloads == {"README.md", "tiny-llama-F16-00001-of-00002.gguf", "tiny-llama-F16-00002-of-00002.gguf"}


def test_model_file_from_python_and_a_pattern_that_matches_nothing(layouts_hub: HubEmulator, volume: Path) -> None:
    with pytest.raises(SelectionError, match="matches no weight file"):
        _store(volume, layouts_hub, MODEL_FILE="*Q2_K*").plan("org/tiny-gguf")
    plan = _store(volume, layouts_hub).plan("org/tiny-gguf", selection=Selection(file="*Q8_0.gguf"))
    assert [f.path for f in plan.kept if f.is_weight] == ["tiny-llama-Q8_0.gguf"]


def test_cli_plan_shows_every_file_and_downloads_nothing(layouts_hub: HubEmulator, volume: Path) -> None:
    env = subprocess_env(volume, HF_ENDPOINT=layouts_hub.url)
    text = run_cli("fetch", "org/sharded", "--plan", env=env, check=True).stdout
    assert "skip" in text and "consolidated.safetensors  (consolidated duplicate)" in text
    assert text.strip().splitlines()[-1].startswith("total: keep ")
    data = json.loads(run_cli("fetch", "org/tiny-sd", "--plan", "--json", "--variant", "fp16", env=env).stdout)
    kept = {f["path"] for f in data["files"] if f["keep"]}
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in kept and "tiny-sd-v1-0.safetensors" not in kept
    assert data["kept_bytes"] == sum(f["size"] for f in data["files"] if f["keep"]) < data["total_bytes"]
    assert layouts_hub.stats.file_requests == 2  # the shards' index and model_index.json: no weight file
    assert not list(volume.rglob("*.safetensors"))
    bad = run_cli("fetch", "org/tiny-sd", "--plan", "--variant", "../x", env=env)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1


def test_refused_for_space_after_reading_the_deciding_files_writes_nothing(
    layouts_hub: HubEmulator, volume: Path
) -> None:
    from volcache import InsufficientSpace

    with pytest.raises(InsufficientSpace):
        _store(volume, layouts_hub, VOLCACHE_FREE_MARGIN="1000TB").resolve("org/sharded")
    assert ("GET", "model.safetensors.index.json") in _resolve_paths(layouts_hub, "org/sharded")
    assert [p for p in volume.rglob("*") if p.is_file() and "blobs" in p.parts] == []
