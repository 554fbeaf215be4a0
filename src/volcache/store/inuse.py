"""In-use markers: a worker that loaded a snapshot says so, so `volcache prune` leaves it alone.

A marker is `<records>/inuse/<repo folder>/<commit>/<host>-<pid>-<token>.json`, naming its
holder the way a lease file does. A daemon thread refreshes its mtime every `lease_timeout / 4`
seconds. A marker is live while its holder is a live process here (same host, boot and pid
namespace), or, for any other holder, while its mtime is younger than twice the lease time-out
(no pid check is possible across hosts or containers). A marker of a dead process here is never
live, however fresh. Ages are measured on the volume's clock (`volume.volume_now`), never the
local one: a prune host whose clock runs ahead must not judge live markers stale.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import uuid
from pathlib import Path

from .._settings import StoreSettings
from .layout import VolumeLayout
from .lease import Holder, holder_is_dead, is_here, read_holder
from .volume import Heartbeat, ReleasedOnExit, refresh, replace_into, retry_io, volume_now

log = logging.getLogger("volcache.inuse")

__all__ = ["InUse", "InUseMarker", "hold_in_use", "live_users", "read_marker", "read_markers", "volume_clock"]


@dataclasses.dataclass(frozen=True)
class InUseMarker:
    """One marker file and what it says about its holder."""

    path: Path
    holder: Holder | None  # None: unreadable (being written); judged by its mtime alone
    age: float  # seconds since its last heartbeat
    live: bool

    def describe(self) -> str:
        who = self.holder.describe() if self.holder else self.path.name
        return f"{who} (heartbeat {self.age:.0f}s ago)"


class InUse(ReleasedOnExit):
    """A held in-use marker. Release it (or leave the `with` block) when the model is unloaded."""

    def __init__(self, path: Path, holder: Holder, interval: float) -> None:
        self.path = path
        self.holder = holder
        self._interval = interval
        self.held = False
        self._beat = Heartbeat(self._heartbeat, interval, "volcache-inuse")

    def start(self) -> InUse:
        """Write the marker and start its heartbeat; on a read-only volume, warn and hold nothing."""
        try:
            self._write()
        except OSError as exc:
            log.warning("volcache: cannot mark %s as in use (%s); `volcache prune` may evict it", self.path, exc)
            return self
        self.held = True
        self._beat.start()
        return self

    def _write(self) -> None:
        content = json.dumps(dataclasses.asdict(self.holder))
        for attempt in range(3):  # `volcache prune` may remove an empty folder between mkdir and write
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                replace_into(self.path, lambda tmp: tmp.write_text(content))
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise

    def _heartbeat(self) -> bool:
        if not refresh(self.path, "the in-use marker"):  # removed by hand: say again that it is in use
            with contextlib.suppress(OSError):
                self._write()
        return True

    def release(self) -> None:
        """Stop the heartbeat and remove the marker; safe to call twice."""
        self._beat.stop()
        if self.held:
            self.held = False
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> InUse:
        return self


def hold_in_use(settings: StoreSettings, model: str, commit: str, *, purpose: str = "loaded") -> InUse:
    """Mark the snapshot `model@commit` as loaded by this process until `release()` or exit.

    Call it right after `ModelStore.resolve()` returns, before loading the weights, and keep the
    handle for the life of the process. A prune that planned before the marker appeared checks
    again under the model's lease, so the snapshot is safe once this returns; to close the last
    window (a prune that finished between `resolve()` and this call), resolve once more after it::

        res = store.resolve(model)
        store.mark_used(res)
        in_use = hold_in_use(settings, res.model, res.commit) if res.commit else None
        res = store.resolve(model)  # offline and cheap: the snapshot is still complete

    Fail-soft: if the marker cannot be written (a read-only volume), it logs a warning and
    returns a handle that holds nothing (`held` is False).
    """
    holder = Holder.me(purpose)
    # The token's start keeps two containers that share a host name and a pid (often 1) apart.
    path = (
        VolumeLayout.of(settings).inuse_dir(model, commit)
        / f"{_safe(holder.host)}-{holder.pid}-{holder.token[:8]}.json"
    )
    return InUse(path, holder, max(0.05, settings.lease_timeout / 4)).start()


def volume_clock(settings: StoreSettings) -> float:
    """The volume's time now, read from a scratch file touched on it (see `volume.volume_now`)."""
    return volume_now(VolumeLayout.of(settings).clock_probe(uuid.uuid4().hex))


def live_users(settings: StoreSettings, model: str, commit: str, now: float | None = None) -> list[InUseMarker]:
    """The live in-use markers of `model@commit` (empty: nobody is known to use it).

    `now` is the volume's clock (`volume_clock`); read once per call when not given.
    """
    return [m for m in read_markers(settings, model, commit, now) if m.live]


def read_markers(settings: StoreSettings, model: str, commit: str, now: float | None = None) -> list[InUseMarker]:
    """Every in-use marker of `model@commit`, live or not, aged by the volume's clock."""
    folder = VolumeLayout.of(settings).inuse_dir(model, commit)
    try:
        paths = sorted(p for p in folder.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except OSError:
        return []
    markers = []
    if paths and now is None:
        now = volume_clock(settings)
    for path in paths:
        marker = read_marker(path, settings.lease_timeout, now)
        if marker is not None:
            markers.append(marker)
    return markers


def read_marker(path: Path, lease_timeout: float, now: float | None = None) -> InUseMarker | None:
    """Judge one holder file (an in-use marker, or a lease file: same format); None if it is gone.

    `now` is the volume's clock; without it the marker's folder is used to read that clock.
    """
    try:
        mtime = retry_io(path.stat).st_mtime
    except FileNotFoundError:
        return None
    except OSError:  # unreadable after retries: judged alive, the safe side for prune
        return InUseMarker(path, None, 0.0, True)
    if now is None:
        now = volume_now(path.parent / f".clock-{uuid.uuid4().hex}")
    age = max(0.0, now - mtime)
    holder = read_holder(path)
    here = holder is not None and is_here(holder)  # its pid can be checked; else only its heartbeat
    live = not holder_is_dead(holder) if holder is not None and here else age < 2 * lease_timeout
    return InUseMarker(path, holder, age, live)


def _safe(host: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in host) or "host"
