"""A hostile (or badly broken) Hub: lying listings, path tricks in headers, absurd sizes.

tests/store/test_store.py covers one `../` path in a listing. Here every kind of bad listing entry,
and a proxy (`_hostile.HostileHub`) that rewrites the headers huggingface_hub builds paths from:
`ETag`/`X-Linked-Etag` name the blob file, `X-Repo-Commit` the snapshot folder, `X-Linked-Size`
the expected size. Whatever the Hub says: nothing is written outside the model's cache folder, no
symlink on the volume points outside it, nothing is recorded complete, the store refuses with a
clear error, and a later fetch from an honest Hub repairs the model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.faults._hostile import Answer, HostileHub, Rewrite
from tests.faults._support import Expected, TrialLog, bad_bytes, incomplete_files, repo_dir, weight_bytes
from volcache import ModelStore, StoreError
from volcache.testing import Faults, HubEmulator

pytestmark = pytest.mark.faults

TINY = "org/tiny"
OID = "a" * 40


@pytest.fixture
def tiny(hub_root: Path) -> Expected:
    return Expected.from_folder(TINY, hub_root / "org" / "tiny", ["config.json", "tokenizer.json", "model.safetensors"])


def _entry(path: Any = "config.json", size: Any = 300, oid: Any = OID, **extra: Any) -> dict[str, Any]:
    return {"type": "file", "path": path, "size": size, "oid": oid, **extra}


LISTINGS: dict[str, list[dict[str, Any]]] = {
    "absolute path": [_entry("/etc/passwd")],
    "parent in the middle": [_entry("a/../../escaped")],
    "parent at the start": [_entry("../escaped")],
    "dot segment": [_entry("./config.json")],
    "empty segment": [_entry("a//b")],
    "backslashes": [_entry("a\\..\\..\\b")],
    "NUL byte": [_entry("x\x00y")],
    "home tilde": [_entry("~/.bashrc")],
    "empty path": [_entry("")],
    "negative size": [_entry(size=-1)],
    "size of 1 PB": [_entry(size=10**15)],
    "size of 10^30": [_entry(size=10**30)],
    "size not a number": [_entry(size="12abc")],
    "size missing": [_entry(size=None)],
    "size fractional": [_entry(size=1.5)],
    "blob id with a path": [_entry(oid="../../../escaped")],
    "LFS sha256 with a path": [_entry(lfs={"oid": "../x", "size": 300, "pointerSize": 100})],
    "only a symlink entry": [{"type": "symlink", "path": "config.json", "size": 3, "oid": OID}],
    "no files at all": [],
}


def _outside(base: Path, cache: Path, *allowed: Path) -> list[str]:
    """Files, and symlinks on the volume, that lie (or point) outside the model's cache folder."""
    found = []
    for root, dirs, files in os.walk(base):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = Path(root, name)
            if any(a == path or a in path.parents for a in allowed):
                continue
            if cache not in path.parents:
                found.append(str(path))
            elif path.is_symlink() and cache not in Path(os.path.realpath(path)).parents:
                found.append(f"{path} -> {os.readlink(path)}")
    return found


def _check_refused(volume: Path, store: ModelStore, base: Path, *allowed: Path) -> None:
    cache = volume / "models"
    outside = _outside(base, cache, *allowed)
    assert outside == [], f"written outside the cache {cache}: {outside}"
    assert store.find_local(TINY, "main") is None, "a refused model was recorded complete"
    assert not list((cache / ".volcache/records").rglob("*.json"))
    assert incomplete_files(volume) == []


@pytest.mark.parametrize("name", list(LISTINGS))
def test_a_hostile_listing_is_refused_before_any_download(
    name: str, tmp_path: Path, volume: Path, hub: HubEmulator, hub_root: Path, trial_log: TrialLog
) -> None:
    with trial_log.trial("hostile listing (paths, sizes, ids, types)") as trial:
        hub.faults = Faults(tree_override=LISTINGS[name])
        store = ModelStore(make_settings(volume, HF_ENDPOINT=hub.url))
        with pytest.raises(StoreError) as err:
            store.resolve(TINY)
        message = str(err.value)
        assert "Traceback" not in message and "\n" not in message, message
        assert "org/tiny" in message or "the Hub listed" in message, f"the error must say what was refused: {message}"
        assert hub.stats.file_requests == 0, f"{name}: a download started: {hub.stats.per_file}"
        assert weight_bytes(volume) == 0
        _check_refused(volume, store, tmp_path, hub_root)
        trial.note = name


def _rewrite_weights(**headers: str) -> Rewrite:
    def rewrite(answer: Answer) -> None:
        if answer.is_file and answer.path.endswith("/model.safetensors"):
            for header, value in headers.items():
                name = header.replace("_", "-")
                if name in answer.headers or name in ("ETag", "X-Linked-Etag", "X-Repo-Commit"):
                    answer.headers[name] = value

    return rewrite


def _longer_body(answer: Answer) -> None:
    if answer.is_file and answer.method == "GET" and answer.path.endswith("/model.safetensors"):
        answer.body *= 3


def _header_cases(tmp_path: Path) -> dict[str, Rewrite]:
    outside_dir = tmp_path / "outside-dir"
    escape = '"../../../../../escaped"'  # from blobs/ up to tmp_path
    return {
        "ETag climbs out of blobs/": _rewrite_weights(ETag=escape, X_Linked_Etag=escape),
        "ETag is an absolute path": _rewrite_weights(
            ETag=f'"{tmp_path}/absolute"', X_Linked_Etag=f'"{tmp_path}/absolute"'
        ),
        "ETag names an outside folder": _rewrite_weights(ETag=f'"{outside_dir}"', X_Linked_Etag=f'"{outside_dir}"'),
        "ETag is empty (blobs/ itself)": _rewrite_weights(ETag='""', X_Linked_Etag='""'),
        "ETag of another blob": _rewrite_weights(ETag=f'"{"b" * 64}"', X_Linked_Etag=f'"{"b" * 64}"'),
        "X-Repo-Commit of another commit": _rewrite_weights(X_Repo_Commit="b" * 40),
        "X-Repo-Commit climbs out": _rewrite_weights(X_Repo_Commit="../../../escaped"),
        "X-Linked-Size of 10 TB": _rewrite_weights(X_Linked_Size=str(10**13)),
        "X-Linked-Size too small": _rewrite_weights(X_Linked_Size="1000"),
        "body 3x longer than listed": _longer_body,
    }


HEADER_CASES = list(_header_cases(Path("/nonexistent")))


# One stream per file (huggingface_hub's transfer), or several (store/ranged.py: 64 KiB parts of
# the 400 kB weights); the HEAD either way goes through the answer guard.
STREAMS = {"one stream": {}, "several streams": {"VOLCACHE_DOWNLOAD_PART": "64KiB"}}


@pytest.mark.parametrize("streams", list(STREAMS))
@pytest.mark.parametrize("name", HEADER_CASES)
def test_hostile_headers_never_write_outside_the_cache(
    name: str,
    streams: str,
    tmp_path: Path,
    volume: Path,
    hub: HubEmulator,
    hub_root: Path,
    tiny: Expected,
    trial_log: TrialLog,
    fast_retries: None,
) -> None:
    with trial_log.trial("hostile headers (ETag, commit, size tricks)") as trial:
        trial.note = f"{name} ({streams})"
        outside_dir = tmp_path / "outside-dir"
        outside_dir.mkdir()
        with HostileHub(hub.url, _header_cases(tmp_path)[name]) as proxy:
            store = ModelStore(make_settings(volume, HF_ENDPOINT=proxy.url, **STREAMS[streams]))
            with pytest.raises(StoreError) as err:
                store.resolve(TINY)
        message = str(err.value)
        assert "model.safetensors" in message and "\n" not in message, message
        _check_refused(volume, store, tmp_path, hub_root, outside_dir)
        assert list(outside_dir.iterdir()) == [], "something was written into a folder outside the cache"

        honest = ModelStore(make_settings(volume, HF_ENDPOINT=hub.url))
        assert honest.resolve(TINY).source == "download", "an honest Hub must repair what a hostile one left"
        trial.lost, problems = bad_bytes(volume, tiny)
        trial.duplicated = weight_bytes(volume) - tiny.bytes
        assert problems == [] and trial.duplicated == 0, (problems, weight_bytes(volume))
        assert sorted(p.name for p in (repo_dir(volume, TINY) / "snapshots").iterdir()) == [hub.commit_sha(TINY)]
