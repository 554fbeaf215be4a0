"""Fixtures of the fault suite: a sharded safetensors model to serve, what it must look like on the volume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults._support import Expected
from volcache.testing import HubEmulator, write_random_repo

SHARDED = "org/sharded"
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
# What select_needed keeps: the shards, their index, config and tokenizer (pytorch_model.bin and onnx/ are skipped).
SHARDED_NEEDED = [*SHARDS, "model.safetensors.index.json", "config.json", "tokenizer.json"]
SHARD_FLOATS = 175_000  # 700 kB per shard: about 2 s per shard at the suite's bandwidth cap
BANDWIDTH = 350_000  # bytes per second per download stream


def write_sharded_model(folder: Path, seed: int = 7) -> Path:
    """Two real safetensors shards (a worker can load them), an index, config, tokenizer, and skipped extras."""
    import numpy as np
    from safetensors.numpy import save_file

    # Extras first: write_random_repo also writes a config.json, replaced below.
    write_random_repo(folder, {"tokenizer.json": 30_000, "pytorch_model.bin": 50_000, "onnx/model.onnx": 20_000}, seed)
    rng = np.random.default_rng(seed)
    weight_map = {}
    for i, shard in enumerate(SHARDS):
        name = f"layers.{i}.weight"
        save_file({name: rng.standard_normal(SHARD_FLOATS).astype(np.float32)}, str(folder / shard))
        weight_map[name] = shard
    index = {"metadata": {"total_size": 8 * SHARD_FLOATS}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    (folder / "config.json").write_text(json.dumps({"model_type": "volcache-fault-suite", "seed": seed}))
    return folder


@pytest.fixture(scope="session")
def sharded_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fault-mirror")
    write_sharded_model(root / "org" / "sharded")
    return root


@pytest.fixture(scope="session")
def sharded(sharded_root: Path) -> Expected:
    return Expected.from_folder(SHARDED, sharded_root / "org" / "sharded", SHARDED_NEEDED)


@pytest.fixture
def sharded_hub(sharded_root: Path) -> Iterator[HubEmulator]:
    from volcache.testing import Faults

    with HubEmulator(sharded_root, faults=Faults(bandwidth=BANDWIDTH)) as emulator:
        yield emulator
