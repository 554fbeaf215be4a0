"""A worker process for the fault suite: `volcache fetch`, or a minimal worker, with test-only hooks.

    python _driver.py [--pause-at PHASE --marker FILE] [--no-flock] [--wait-log-interval S] fetch MODEL ...
    python _driver.py [...] worker MODEL

`--pause-at` stops the process at one moment of a download so that the test can SIGKILL it there:
it writes FILE, then sleeps (the lease heartbeat thread keeps beating, like a hung worker). Phases:

    lease    holding the lease, before listing the repo
    verify   a weight file was downloaded into its staging folder, not yet size/sha256-checked
    record   the completion record's temp file is written and fsynced, not yet renamed
    ref      the record is in place, refs/<revision> not yet written
    release  the model is complete, the lease not yet released

`--no-flock` turns `fcntl.flock`/`lockf` into no-ops that always succeed, as on network filesystems
where flock silently succeeds: the volume lease must still serialise the workers.

`worker` does what a serving worker does at start (settings, pin, resolve, load the safetensors
weights in place) and prints one JSON line: path, source, and a digest of the loaded tensors.
This file is run by path, so it imports nothing from the tests.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

PHASES = ("lease", "verify", "record", "ref", "release")


def _pause(marker: Path, phase: str) -> None:
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(f"{phase} {os.getpid()}")
    os.replace(tmp, marker)
    time.sleep(3600)


def _install_pause(phase: str, marker: Path) -> None:
    from volcache.store import hub as _hub
    from volcache.store import layout as _layout
    from volcache.store import lease as _lease
    from volcache.store import record as _record
    from volcache.store import store as _store

    if phase == "lease":
        original_locked = _store.ModelStore._download_locked

        def download_locked(self: Any, *args: Any, **kwargs: Any) -> Any:
            _pause(marker, phase)
            return original_locked(self, *args, **kwargs)

        _store.ModelStore._download_locked = download_locked  # type: ignore[method-assign]
    elif phase == "verify":
        original_check = _hub.check_file

        def check_file(path: Path, f: Any, *args: Any, **kwargs: Any) -> Any:
            if f.path.endswith(".safetensors"):  # a weight file, the one that matters
                _pause(marker, phase)
            return original_check(path, f, *args, **kwargs)

        _hub.check_file = check_file
        original_digest = _hub.digest_problem

        def digest_problem(digest: str, f: Any, *args: Any, **kwargs: Any) -> Any:
            if f.path.endswith(".safetensors"):  # the multi-stream path: hashed as it landed, judged here
                _pause(marker, phase)
            return original_digest(digest, f, *args, **kwargs)

        _hub.digest_problem = digest_problem
    elif phase == "record":

        class _Os:
            """`os` for volcache.store.record only: pause before the record's rename."""

            def __getattr__(self, name: str) -> Any:
                return getattr(os, name)

            def replace(self, src: Any, dst: Any) -> None:
                if str(dst).endswith(".json"):
                    _pause(marker, phase)
                os.replace(src, dst)

        setattr(_record, "os", _Os())  # noqa: B010 - this module's `os` only
    elif phase == "ref":
        original_ref = _layout.RepoFolder.write_ref

        def write_ref(*args: Any, **kwargs: Any) -> None:
            _pause(marker, phase)
            original_ref(*args, **kwargs)

        _layout.RepoFolder.write_ref = write_ref  # type: ignore[method-assign]
    elif phase == "release":
        original_release = _lease.Lease.release

        def release(self: Any) -> None:
            _pause(marker, phase)
            original_release(self)

        _lease.Lease.release = release  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown phase {phase!r}; use one of {', '.join(PHASES)}")


def _worker(model: str) -> None:
    import volcache

    settings = volcache.Settings.from_env()
    volcache.pin(settings)
    resolution = volcache.ModelStore(settings).resolve(model)
    from safetensors.numpy import load_file

    digest = hashlib.sha256()
    tensors = 0
    for shard in sorted(resolution.path.glob("*.safetensors")):
        for name, array in sorted(load_file(str(shard)).items()):
            digest.update(name.encode() + array.tobytes())
            tensors += 1
    line = {"path": str(resolution.path), "source": resolution.source, "tensors": tensors, "digest": digest.hexdigest()}
    print(json.dumps(line), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pause-at", choices=PHASES)
    parser.add_argument("--marker", type=Path)
    parser.add_argument("--no-flock", action="store_true")
    parser.add_argument("--wait-log-interval", type=float)
    parser.add_argument("mode", choices=("fetch", "worker"))
    parser.add_argument("args", nargs=argparse.REMAINDER)
    opts = parser.parse_args()
    if opts.no_flock:
        fcntl.flock = lambda *a, **k: None
        fcntl.lockf = lambda *a, **k: None
    if opts.wait_log_interval is not None:
        from volcache.store import lease as _lease

        _lease.WAIT_LOG_INTERVAL = opts.wait_log_interval
    if opts.pause_at:
        _install_pause(opts.pause_at, opts.marker)
    if opts.mode == "worker":
        from volcache._logging import setup_logging

        setup_logging("INFO")
        _worker(opts.args[0])
        return
    from volcache.cli import main as cli_main

    sys.argv = ["volcache", "fetch", *opts.args]
    cli_main(["fetch", *opts.args])


if __name__ == "__main__":
    main()
