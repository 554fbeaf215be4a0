"""Eight workers start together on an empty volume (I1, I2, I3).

Extends tests/store/test_cli_fetch.py's eight `volcache fetch` processes: here each process is a
worker that also loads the sharded safetensors weights in place, and a second variant runs with
`flock` a no-op (a network filesystem where it silently succeeds), so only the lease serialises them.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.faults._support import Expected, TrialLog, bad_bytes, incomplete_files, ls_json, rounds, spawn, weight_bytes
from tests.faults.conftest import SHARDED, SHARDS
from volcache.testing import HubEmulator

pytestmark = pytest.mark.faults
WORKERS = 8


def _source_digest(root: Path) -> str:
    from safetensors.numpy import load_file

    digest = hashlib.sha256()
    for shard in SHARDS:
        for name, array in sorted(load_file(str(root / "org" / "sharded" / shard)).items()):
            digest.update(name.encode() + array.tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("no_flock", [False, True], ids=["flock", "flock-is-a-no-op"])
def test_eight_workers_download_each_file_once_and_load_one_snapshot(
    no_flock: bool,
    tmp_path: Path,
    sharded_root: Path,
    sharded_hub: HubEmulator,
    sharded: Expected,
    trial_log: TrialLog,
) -> None:
    fault = "8 workers start at once" + (", flock a no-op" if no_flock else "")
    want_digest = _source_digest(sharded_root)
    for r in range(rounds()):
        with trial_log.trial(fault) as trial:
            volume = tmp_path / f"volume-{r}"
            volume.mkdir()
            sharded_hub.reset_stats()
            env = subprocess_env(volume, HF_ENDPOINT=sharded_hub.url, VOLCACHE_LEASE_TIMEOUT="30")
            start = time.monotonic()
            procs = [spawn(env, "worker", SHARDED, no_flock=no_flock) for _ in range(WORKERS)]
            outs = [p.communicate(timeout=300) for p in procs]
            trial.seconds = time.monotonic() - start
            failed = [(p.returncode, err[-2000:]) for p, (_, err) in zip(procs, outs, strict=True) if p.returncode]
            assert not failed, f"workers failed: {failed}"
            loaded = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]

            served = sharded_hub.stats.as_dict()
            trial.refetched = served["bytes_served"] - sharded.bytes
            trial.lost, problems = bad_bytes(volume, sharded)
            trial.duplicated = weight_bytes(volume) - sharded.bytes
            assert served["per_file"] == {f"{SHARDED}/{name}": 1 for name in sharded.files}, (
                f"each needed file must be served exactly once: {served['per_file']}"
            )
            assert trial.refetched == 0, (
                f"the Hub served {served['bytes_served']} bytes for a {sharded.bytes}-byte model"
            )
            assert len({w["path"] for w in loaded}) == 1, f"workers loaded different snapshots: {loaded}"
            assert {w["digest"] for w in loaded} == {want_digest}, "a worker loaded tensors that differ from the Hub's"
            assert sorted(w["source"] for w in loaded) == ["download"] + ["volume"] * (WORKERS - 1), loaded
            assert problems == [], f"the snapshot does not verify: {problems}"
            assert trial.duplicated == 0, f"{weight_bytes(volume)} bytes on the volume for a {sharded.bytes}-byte model"
            assert incomplete_files(volume) == []
            assert [row["state"] for row in ls_json(volume)] == ["complete"]
