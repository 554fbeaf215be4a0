"""A flaky Hub: cut connections, 5xx, slow answers, corrupted bytes (I2, I4).

tests/store/test_store.py covers two transient 503s and corrupted safetensors bytes once. Here:
faults that heal (the download must survive them), faults that persist (a clear error naming the
file, no record, no partial file, good files kept so that the next try downloads only the rest),
and corrupted bytes in every kind of file, LFS or not. The retry back-offs of huggingface_hub and
of the store are shortened 20x (`fast_retries`) so that a persistent fault fails in seconds.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.faults._support import Expected, TrialLog, bad_bytes, incomplete_files, ls_json, rounds, weight_bytes
from volcache import IntegrityError, ModelStore, StoreError
from volcache.testing import Faults, HubEmulator

pytestmark = pytest.mark.faults

TINY = "org/tiny"
NEEDED = ["config.json", "tokenizer.json", "model.safetensors"]


@pytest.fixture
def tiny(hub_root: Path) -> Expected:
    return Expected.from_folder(TINY, hub_root / "org" / "tiny", NEEDED)


def _store(volume: Path, hub: HubEmulator) -> ModelStore:
    return ModelStore(make_settings(volume, HF_ENDPOINT=hub.url))


def _heal_when(hub: HubEmulator, condition: Callable[[dict[str, Any]], bool]) -> threading.Thread:
    """Clear the hub's faults as soon as `condition(stats)` holds (the fault struck once)."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not condition(hub.stats.as_dict()):
            time.sleep(0.005)
        hub.faults = Faults()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _check_absent(volume: Path, store: ModelStore) -> None:
    """After a failed download: nothing recorded, nothing listed complete, no partial file."""
    assert store.find_local(TINY, "main") is None, "a failed download was recorded complete"
    assert not list((volume / "models/.volcache/records").rglob("*.json")), "a record was written"
    assert all(row["state"] != "complete" for row in ls_json(volume)), ls_json(volume)
    assert incomplete_files(volume) == [], incomplete_files(volume)


def _check_complete(volume: Path, expected: Expected) -> tuple[int, int]:
    lost, problems = bad_bytes(volume, expected)
    duplicated = weight_bytes(volume) - expected.bytes
    assert problems == [], f"the model does not verify: {problems}"
    assert duplicated == 0, f"{weight_bytes(volume)} bytes on the volume for a {expected.bytes}-byte model"
    assert incomplete_files(volume) == []
    return lost, duplicated


HEALING: dict[str, tuple[Faults, Callable[[dict[str, Any]], bool] | None]] = {
    # name: (faults, the stats showing the fault struck)
    "cut connection, healed": (
        Faults(cut_after=50_000, only="*.safetensors"),
        lambda s: s["bytes_per_file"].get(f"{TINY}/model.safetensors", 0) >= 50_000,
    ),
    "5xx x6 on a file, healed": (
        Faults(status=503, fail_first=6, only="*.safetensors"),
        None,  # fail_first heals by itself after six failures: more than the client's own retries
    ),
    "corrupt bytes, healed": (
        Faults(corrupt=True, only="*.safetensors"),
        lambda s: s["bytes_per_file"].get(f"{TINY}/model.safetensors", 0) >= 400_000,
    ),
    "slow answers (0.3 s each)": (Faults(delay=0.3), None),
}


@pytest.mark.parametrize("streams", ["one stream", "several streams"])
@pytest.mark.parametrize("name", list(HEALING))
def test_faults_that_heal_are_survived(
    name: str, streams: str, tmp_path: Path, hub: HubEmulator, tiny: Expected, trial_log: TrialLog, fast_retries: None
) -> None:
    faults, struck = HEALING[name]
    for r in range(rounds()):  # the healing races the client's retries: repeat it
        with trial_log.trial(f"flaky Hub: {name}, {streams}") as trial:
            volume = tmp_path / f"volume-{r}"
            hub.reset_stats()
            hub.faults = dataclasses.replace(faults)  # a new object re-arms fail_first
            watcher = _heal_when(hub, struck) if struck is not None else None
            start = time.monotonic()
            part = {"VOLCACHE_DOWNLOAD_PART": "64KiB"} if streams == "several streams" else {}
            resolution = ModelStore(make_settings(volume, HF_ENDPOINT=hub.url, **part)).resolve(TINY)
            trial.seconds = time.monotonic() - start
            if watcher is not None:
                watcher.join()
            trial.refetched = hub.stats.bytes_served - tiny.bytes
            assert resolution.source == "download"
            trial.lost, trial.duplicated = _check_complete(volume, tiny)


PERSISTENT = {
    "cut connection, every time": Faults(cut_after=50_000, only="*.safetensors"),
    "5xx on a file, every time": Faults(status=502, only="*.safetensors"),
    "corrupt LFS bytes, every time": Faults(corrupt=True, only="*.safetensors"),
    "corrupt non-LFS bytes, every time": Faults(corrupt=True, only="*.json"),
}


@pytest.mark.parametrize("name", list(PERSISTENT))
def test_faults_that_persist_give_a_clear_error_then_the_next_try_fetches_only_the_rest(
    name: str, volume: Path, hub: HubEmulator, tiny: Expected, trial_log: TrialLog, fast_retries: None
) -> None:
    with trial_log.trial(f"flaky Hub: {name}") as trial:
        hub.faults = PERSISTENT[name]
        store = _store(volume, hub)
        with pytest.raises(StoreError) as err:
            store.resolve(TINY)
        message = str(err.value)
        if "corrupt" in name:
            assert isinstance(err.value, IntegrityError), message
            assert "does not match the Hub" in message and "removed" in message, message
        else:
            assert "model.safetensors" in message and "after 3 attempts" in message and "Fix:" in message, message
            assert "\n" not in message, f"the CLI prints an error as one line: {message!r}"
        _check_absent(volume, store)

        hub.faults = Faults()
        hub.reset_stats()
        start = time.monotonic()
        assert store.resolve(TINY).source == "download"
        trial.seconds = time.monotonic() - start
        trial.refetched = hub.stats.bytes_served - sum(tiny.files[n][0] for n in _broken(name))
        trial.lost, trial.duplicated = _check_complete(volume, tiny)
        assert set(hub.stats.per_file) == {f"{TINY}/{n}" for n in _broken(name)}, (
            f"files that downloaded fine must be kept, not fetched again: {hub.stats.per_file}"
        )


def _broken(name: str) -> list[str]:
    return ["config.json", "tokenizer.json"] if "non-LFS" in name else ["model.safetensors"]


def test_a_hub_that_never_answers_gives_a_clear_error_and_writes_nothing(
    volume: Path, hub: HubEmulator, trial_log: TrialLog, fast_retries: None
) -> None:
    with trial_log.trial("flaky Hub: 5xx on every request") as trial:
        hub.faults = Faults(status=500)
        store = _store(volume, hub)
        start = time.monotonic()
        with pytest.raises(StoreError, match=r"did not answer .* after 3 attempts.*Fix:") as err:
            store.resolve(TINY)
        trial.seconds = time.monotonic() - start
        assert hub.stats.requests == 3, f"three tries, then stop: {hub.stats.log}"
        assert "\n" not in str(err.value), f"the CLI prints an error as one line: {err.value!r}"
        assert weight_bytes(volume) == 0
        _check_absent(volume, store)


@pytest.mark.parametrize("heals", [True, False], ids=["then-heals", "every-time"])
def test_answers_slower_than_the_client_timeout(
    heals: bool,
    volume: Path,
    hub: HubEmulator,
    tiny: Expected,
    trial_log: TrialLog,
    fast_retries: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DOWNLOAD_TIMEOUT", 0.5)
    name = "answers slower than the client's time-out" + (", healed" if heals else ", every time")
    with trial_log.trial(f"flaky Hub: {name}") as trial:
        hub.faults = Faults(delay=1.2, only="*.safetensors")
        if heals:  # the first GET of the weights times out, later ones are quick
            _heal_when(hub, lambda s: s["file_requests"] >= 1 or f"{TINY}/model.safetensors" in s["per_file"])
        store = _store(volume, hub)
        start = time.monotonic()
        if heals:
            assert store.resolve(TINY).source == "download"
            trial.seconds = time.monotonic() - start
            trial.lost, trial.duplicated = _check_complete(volume, tiny)
            return
        with pytest.raises(StoreError, match=r"model\.safetensors.*after 3 attempts") as err:
            store.resolve(TINY)
        trial.seconds = time.monotonic() - start
        assert "\n" not in str(err.value)
        _check_absent(volume, store)
