"""Workers SIGKILLed at seeded random moments of a download (I2, I3).

Each trial starts `volcache fetch` on an empty volume against a bandwidth-capped emulator and kills
it with SIGKILL (no cleanup code runs) at one moment, chosen in turn, with a random delay within it:

    start     0-0.4 s after launch: before, at or just after taking the lease
    lease     holding the lease, before listing the repo (a hook pauses it there)
    download  while bytes flow: a random moment after the first partial file appears
    verify    a weight file downloaded but not yet sha256-checked; half of these trials serve
              corrupted bytes to the victim, so a later worker must not trust that blob
    record    the completion record written to its temp file, not yet renamed
    ref       the record in place, refs/main not yet written
    release   complete, the lease not yet released

Half the trials fetch the shards on several streams each (`VOLCACHE_DOWNLOAD_PART=64KiB`).

Seeded variants: a second worker already waiting for the lease when the victim dies (it must take
over at once: the holder is a dead process on this host), or the dead holder's lease rewritten to
name another host (the next worker must wait the lease time-out, and no longer).

After each kill: `volcache ls` never calls a snapshot complete that does not verify; the next fetch
succeeds within the lease time-out plus generous slack; the model's sha256s match the Hub's; no
`.incomplete` file is left; the volume holds exactly 1.00x the model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import make_settings, run_cli, subprocess_env
from tests.faults._support import (
    Expected,
    Trial,
    TrialLog,
    bad_bytes,
    complete_but_wrong,
    incomplete_files,
    kill_trials,
    ls_json,
    repo_dir,
    run_trials,
    seed,
    sigkill,
    spawn,
    wait_for,
    weight_bytes,
)
from tests.faults.conftest import BANDWIDTH, SHARDED
from volcache import ModelStore
from volcache.store import store as _store
from volcache.store.lease import read_holder
from volcache.testing import Faults, HubEmulator

pytestmark = pytest.mark.faults

PHASES = ("start", "lease", "download", "verify", "record", "ref", "release")
LEASE_TIMEOUT = 3.0
SLACK = 90.0  # generous: a loaded CI machine must not fail a trial on time alone
FAULT_NAMES = {
    "start": "SIGKILL at start-up (before/at the lease)",
    "lease": "SIGKILL holding the lease, before download",
    "download": "SIGKILL during the download",
    "verify": "SIGKILL before sha256 check (half with corrupt bytes)",
    "record": "SIGKILL while writing the completion record",
    "ref": "SIGKILL after the record, before refs/main",
    "release": "SIGKILL after the download, holding the lease",
}


@dataclasses.dataclass(frozen=True)
class Plan:
    phase: str
    delay: float  # seconds after the phase is reached
    corrupt: bool  # the victim is served corrupted shard bytes
    companion: bool  # a second worker is waiting for the lease when the victim dies
    foreign: bool  # the dead victim's lease is rewritten to name another host
    streams: bool  # the shards come on several streams each (store/ranged.py), not one

    @classmethod
    def draw(cls, trial: int) -> Plan:
        rng = random.Random(f"{seed()}:{trial}")
        phase = PHASES[trial % len(PHASES)]
        delay = {"start": rng.uniform(0, 0.4), "download": rng.uniform(0, 1.5)}.get(phase, rng.uniform(0, 0.05))
        corrupt = phase == "verify" and rng.random() < 0.5
        companion = phase != "start" and rng.random() < 0.4
        foreign = not companion and phase in ("lease", "download", "verify", "record") and rng.random() < 0.3
        streams = rng.random() < 0.5
        return cls(phase, delay, corrupt, companion, foreign, streams)


def _holds_lease(volume: Path) -> bool:
    return any((volume / "models/.volcache/locks").glob("*.lease"))


def _make_foreign(volume: Path) -> bool:
    """Rewrite the dead holder's lease to name another host, keeping its heartbeat time."""
    leases = list((volume / "models/.volcache/locks").glob("*.lease"))
    if not leases:
        return False
    lease = leases[0]
    st = lease.stat()
    data = json.loads(lease.read_text() or "{}") or {"pid": 1, "token": "t", "acquired": time.time()}
    data["host"] = "another-host.invalid"
    lease.write_text(json.dumps(data))
    os.utime(lease, (st.st_atime, st.st_mtime))
    return True


def test_sigkill_at_random_moments_never_breaks_the_store(
    tmp_path: Path, sharded_hub: HubEmulator, sharded: Expected, trial_log: TrialLog
) -> None:
    def one(i: int) -> None:
        plan = Plan.draw(i)
        with trial_log.trial(FAULT_NAMES[plan.phase]) as trial:
            trial.note = ", ".join(k for k in ("corrupt", "companion", "foreign", "streams") if getattr(plan, k)) or "-"
            companions: list[subprocess.Popen[str]] = []
            try:
                _run_trial(tmp_path / f"trial-{i}", plan, sharded_hub, sharded, trial, companions)
            finally:
                for companion in companions:
                    if companion.poll() is None:
                        sigkill(companion)

    run_trials(kill_trials(), one)


def _run_trial(
    work: Path, plan: Plan, hub: HubEmulator, expected: Expected, trial: Trial, companions: list[subprocess.Popen[str]]
) -> None:
    volume = work / "volume"
    volume.mkdir(parents=True)
    marker = work / "paused"
    env = subprocess_env(volume, HF_ENDPOINT=hub.url, VOLCACHE_LEASE_TIMEOUT=str(LEASE_TIMEOUT))
    if plan.streams:  # 64 KiB parts of the 700 kB shards: several streams per shard
        env["VOLCACHE_DOWNLOAD_PART"] = "64KiB"
    hub.reset_stats()
    # With `only`, every fault (the cap too) acts on the shards alone: the small files then come at once.
    hub.faults = (
        Faults(bandwidth=BANDWIDTH, corrupt=True, only="*.safetensors") if plan.corrupt else Faults(bandwidth=BANDWIDTH)
    )
    pause = plan.phase if plan.phase not in ("start", "download") else None
    victim = spawn(env, "fetch", SHARDED, pause_at=pause, marker=marker)
    companion = None
    try:
        if plan.phase == "start":
            time.sleep(plan.delay)
        elif plan.phase == "download":
            wait_for(lambda: incomplete_files(volume) or victim.poll() is not None, 120, "a download to start")
            time.sleep(plan.delay)
        else:
            wait_for(lambda: marker.exists() or victim.poll() is not None, 120, f"the victim to reach {plan.phase}")
        if plan.companion and _holds_lease(volume):
            companion = spawn(env, "fetch", SHARDED)
            companions.append(companion)
            time.sleep(0.3)  # let it find the lease taken and start waiting
        hub.faults = Faults(bandwidth=BANDWIDTH)  # whoever downloads next gets the true bytes
        finished_first = victim.poll() is not None
        _, victim_err = sigkill(victim)
    finally:
        if victim.poll() is None:
            sigkill(victim)
    assert not finished_first or victim.returncode == 0, f"the victim failed before the kill:\n{victim_err[-1500:]}"
    if finished_first:
        trial.note += " (finished before the kill)"
    foreign = plan.foreign and companion is None and _make_foreign(volume)

    # Between the kill and the recovery: nothing half-done may be reported complete.
    wrong = complete_but_wrong(volume, expected)
    assert wrong == [], f"after a kill at {plan.phase}: {wrong}"

    start = time.monotonic()
    if companion is not None:
        out, err = companion.communicate(timeout=LEASE_TIMEOUT + SLACK + 60)
        code = companion.returncode
    else:
        proc = run_cli("fetch", SHARDED, env=env, timeout=LEASE_TIMEOUT + SLACK + 60)
        out, err, code = proc.stdout, proc.stderr, proc.returncode
    trial.seconds = time.monotonic() - start
    served = hub.stats.as_dict()["bytes_served"]
    trial.refetched = max(0, served - expected.bytes)
    trial.lost, problems = bad_bytes(volume, expected)
    trial.duplicated = weight_bytes(volume) - expected.bytes
    where = f"kill at {plan} (victim finished first: {finished_first})"
    assert code == 0, f"{where}: the next fetch failed:\n{err[-3000:]}"
    assert trial.seconds < LEASE_TIMEOUT + SLACK, f"{where}: the next fetch took {trial.seconds:.1f}s"
    if foreign:
        assert "taking over the stale lease" in err, f"{where}: no takeover logged:\n{err[-2000:]}"
    assert problems == [], f"{where}: the model does not verify: {problems}"
    assert incomplete_files(volume) == [], f"{where}: partial downloads left: {incomplete_files(volume)}"
    assert trial.duplicated == 0, f"{where}: {weight_bytes(volume)} bytes on the volume for {expected.bytes}"
    assert [r["state"] for r in ls_json(volume)] == ["complete"], f"{where}: {ls_json(volume)}"
    assert out.strip().splitlines()[-1] == str(next((repo_dir(volume, SHARDED) / "snapshots").iterdir()))


def test_partial_files_of_dead_downloaders_are_removed_under_the_lease(
    volume: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch, trial_log: TrialLog
) -> None:
    """The SIGKILL trials show no `.incomplete` survives the next fetch; this shows when it goes."""
    with trial_log.trial("partial files of dead downloaders removed under the lease"):
        store = ModelStore(make_settings(volume, HF_ENDPOINT=hub.url))
        blobs = repo_dir(volume, "org/tiny") / "blobs"
        blobs.mkdir(parents=True)
        dead = [blobs / f"{'e' * 64}.{n:08x}.incomplete" for n in range(3)]  # as huggingface_hub names them
        for partial in dead:
            partial.write_bytes(b"\0" * 10_000)
        seen: list[tuple[int | None, bool]] = []
        real_remove = _store.remove_stale_staging

        def remove(repo: Path) -> None:
            holder = read_holder(store.lease_path("org/tiny"))
            seen.append((holder.pid if holder else None, all(p.exists() for p in dead)))
            real_remove(repo)

        monkeypatch.setattr(_store, "remove_stale_staging", remove)
        store.resolve("org/tiny")
        assert seen and seen[0] == (os.getpid(), True), f"removal ran without holding the lease: {seen}"
        assert incomplete_files(volume) == []
