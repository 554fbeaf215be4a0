"""A volume that fills up during a download because another writer takes the space (I2, I4).

tests/store/test_cli_fetch.py covers a volume too small from the start (the preflight refuses).
Here a 64 MB tmpfs volume passes the preflight, then another process fills it while the weights
stream in. The fetch must stop with one clear error instead of retrying, remove its partial
files, leave the other model on the volume untouched, and succeed once the space is back.
Needs root to mount a tmpfs; skipped cleanly elsewhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TINY_NEEDED_BYTES, make_settings, run_cli, subprocess_env
from tests.faults._support import (
    Expected,
    Trial,
    TrialLog,
    bad_bytes,
    incomplete_files,
    ls_json,
    rounds,
    spawn,
    wait_for,
    weight_bytes,
)
from volcache import InsufficientSpace, ModelStore
from volcache.store.record import CompletionRecord, write_record
from volcache.testing import Faults, HubEmulator, write_random_repo

pytestmark = pytest.mark.faults

BIG, SMALL = "org/big", "org/small"
BIG_FILES = {"model.safetensors": 24_000_000, "tokenizer.json": 30_000}
SMALL_FILES = {"model.safetensors": 2_000_000}


@pytest.fixture
def tmpfs_volume(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs volume needs root")
    vol = tmp_path / "tmpfs-volume"
    vol.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(vol)], check=False).returncode:
        pytest.skip("mount -t tmpfs is not permitted here")
    try:
        yield vol
    finally:
        subprocess.run(["umount", "-l", str(vol)], check=False)


@pytest.fixture(scope="module")
def disk_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("disk-mirror")
    write_random_repo(root / "org" / "big", BIG_FILES, seed=11)
    write_random_repo(root / "org" / "small", SMALL_FILES, seed=12)
    return root


def _expected(root: Path, repo: str, files: dict[str, int]) -> Expected:
    return Expected.from_folder(repo, root / repo, [*files, "config.json"])


def _size(path: Path) -> int:
    """Bytes written to a file that may vanish (a partial download renamed or removed meanwhile).

    Allocated blocks, not the length: a multi-stream download's staged file has its full length
    (sparse) from the start.
    """
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return 0


def fill(path: Path) -> int:
    """Another writer: take every free byte of the filesystem holding `path`; returns bytes written."""
    written = 0
    block = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            while True:
                try:
                    written += f.write(block[:size])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return written


@pytest.mark.parametrize("who", ["volcache fetch", "worker --rp_serve_api"])
def test_disk_filled_by_another_writer_mid_download(
    who: str, tmpfs_volume: Path, disk_root: Path, trial_log: TrialLog
) -> None:
    for _ in range(rounds()):
        for entry in tmpfs_volume.iterdir():  # each round starts from an empty volume
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        with trial_log.trial(f"disk filled by another writer mid-download ({who})") as trial:
            _fill_during_download(tmpfs_volume, disk_root, trial, worker=who.startswith("worker"))


def _fill_during_download(volume: Path, root: Path, trial: Trial, *, worker: bool) -> None:
    big = _expected(root, BIG, BIG_FILES)
    small = _expected(root, SMALL, SMALL_FILES)
    with HubEmulator(root, faults=Faults(bandwidth=8_000_000)) as hub:
        env = subprocess_env(volume, HF_ENDPOINT=hub.url)
        run_cli("fetch", SMALL, env=env, check=True)  # a model already on the volume
        hub.reset_stats()

        if worker:  # the serving worker must stop with the reason, not loop or serve a broken model
            command = [sys.executable, "-m", "volcache.worker", "--rp_serve_api", "--rp_api_port", "0"]
            fetch = subprocess.Popen(
                command, env=dict(env, MODEL_NAME=BIG), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        else:
            fetch = spawn(env, "fetch", BIG)
        try:
            partial = wait_for(
                lambda: [p for p in incomplete_files(volume) if _size(p) > 1_000_000] or fetch.poll() is not None,
                120,
                "the big download to be under way",
            )
        except BaseException:
            fetch.kill()  # never leave the worker serving after a failed trial
            fetch.communicate()
            raise
        assert partial is not True, "the download finished before the disk could be filled"
        filler = volume / "another-writer.bin"
        start = time.monotonic()
        fill(filler)
        _, err = fetch.communicate(timeout=300)
        trial.seconds = time.monotonic() - start
        last = err.strip().splitlines()[-1]
        served = hub.stats.as_dict()

        assert fetch.returncode == 1, f"the fetch must fail once, clearly:\n{err[-3000:]}"
        assert last.startswith(f"volcache: error: the volume filled up while downloading {BIG}"), last
        assert "Partial files were removed" in last and "Fix:" in last, last
        assert "Traceback" not in err and "retrying" not in err, f"it must not retry a full disk:\n{err}"
        weights = BIG_FILES["model.safetensors"]
        assert served["bytes_per_file"].get(f"{BIG}/model.safetensors", 0) <= weights, "it retried a full disk"
        assert incomplete_files(volume) == [], "partial downloads were left on the full volume"
        trial.lost, problems = bad_bytes(volume, small)
        assert problems == [], f"the other model was damaged: {problems}"
        states = {row["model"]: row["state"] for row in ls_json(volume)}
        assert states.get(SMALL) == "complete" and states.get(BIG) != "complete", states
        assert not list((volume / "models/.volcache/records/models--org--big").glob("*")), (
            "a record (or its temp file) of the failed model was left"
        )

        filler.unlink()  # the other writer frees its space: the next fetch completes
        proc = run_cli("fetch", BIG, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        lost_big, problems = bad_bytes(volume, big)
        trial.lost += lost_big
        trial.duplicated = weight_bytes(volume) - big.bytes - small.bytes
        trial.refetched = hub.stats.bytes_served - big.bytes
        assert problems == [], problems
        assert trial.duplicated == 0, f"{weight_bytes(volume)} bytes for {big.bytes + small.bytes}"


def test_disk_full_when_the_record_is_written(
    tmpfs_volume: Path, hub: HubEmulator, trial_log: TrialLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from volcache.store import store as _store

    with trial_log.trial("disk full when the completion record is written") as trial:
        store = ModelStore(make_settings(tmpfs_volume, HF_ENDPOINT=hub.url))
        filler = tmpfs_volume / "another-writer.bin"

        def fill_then_write(path: Path, record: CompletionRecord) -> None:
            fill(filler)
            write_record(path, record)

        monkeypatch.setattr(_store, "write_record", fill_then_write)
        with pytest.raises(InsufficientSpace, match="the volume filled up while writing the completion record") as err:
            store.resolve("org/tiny")
        assert "Fix:" in str(err.value)
        records = tmpfs_volume / "models/.volcache/records"
        assert not [p for p in records.rglob("*") if p.is_file()], "the record's temp file was left behind"
        assert store.find_local("org/tiny", "main") is None
        monkeypatch.setattr(_store, "write_record", write_record)
        filler.unlink()
        resolution = store.resolve("org/tiny")
        assert resolution.source == "download" and resolution.downloaded_bytes == 0, "verified files are kept"
        trial.duplicated = weight_bytes(tmpfs_volume) - TINY_NEEDED_BYTES
        assert trial.duplicated == 0
