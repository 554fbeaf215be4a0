"""A worker marks the snapshot it loaded as in use, so `volcache prune` leaves it alone."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_settings
from volcache import ModelStore
from volcache.store import VolumeLayout
from volcache.store.inuse import live_users
from volcache.testing import HubEmulator
from volcache.worker import _startup


def test_hold_marks_the_snapshot_in_use_and_used(volume: Path, hub: HubEmulator) -> None:
    store = ModelStore(make_settings(volume, HF_ENDPOINT=hub.url))
    resolution = _startup._hold(store, store.resolve("org/tiny"), store.settings)
    try:
        assert resolution.commit is not None
        assert [m.holder.pid for m in live_users(store.settings, "org/tiny", resolution.commit) if m.holder]
        assert VolumeLayout.of(store.settings).used_marker("org/tiny", resolution.commit).exists()
    finally:
        for held in _startup._HELD:
            held.release()
        _startup._HELD.clear()
