"""HF_TOKEN never appears in logs, errors or anything written to disk.

Every scenario runs with the most verbose logging there is (VOLCACHE_LOG_LEVEL=DEBUG, HF_DEBUG=1,
HF_HUB_VERBOSITY=debug) through a proxy that checks the token really was sent, including a Hub
that echoes the token back in its error messages. Then stdout, stderr, error messages with their
tracebacks, and every file on the volume and the ephemeral disk are searched for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_settings, run_cli, subprocess_env
from tests.faults._hostile import Answer, HostileHub, Rewrite
from tests.faults._support import TOKEN, TrialLog
from volcache import ModelStore, Settings, StoreError
from volcache.testing import Faults, HubEmulator

pytestmark = pytest.mark.faults

TINY = "org/tiny"
VERBOSE = {"VOLCACHE_LOG_LEVEL": "DEBUG", "HF_DEBUG": "1", "HF_HUB_VERBOSITY": "debug"}


def _echo_token(answer: Answer) -> None:
    """A Hub that quotes the request's credentials in its errors (some proxies and mirrors do)."""
    if answer.path.startswith("/api/models/"):
        _echo(answer)


def _echo_token_on_weights(answer: Answer) -> None:
    if answer.path.endswith("/model.safetensors"):
        _echo(answer)


def _echo(answer: Answer) -> None:
    echo = f"invalid credentials: {answer.authorization}"
    answer.status = 500
    answer.headers["X-Error-Message"] = echo
    answer.set_json({"error": echo})


def _no_change(answer: Answer) -> None:
    pass


def _files_holding(root: Path, secret: str) -> list[str]:
    found = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if path.is_file() and secret.encode() in path.read_bytes():
                found.append(str(path))
    return found


@contextlib.contextmanager
def _live_foreign_lease(volume: Path) -> Iterator[None]:
    """Another host holds the model's lease and keeps its heartbeat going."""
    lease = volume / "models/.volcache/locks/models--org--tiny.lease"
    lease.parent.mkdir(parents=True)
    lease.write_text(json.dumps({"host": "other.invalid", "pid": 7, "token": "t", "acquired": time.time()}))
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.2):
            os.utime(lease)

    thread = threading.Thread(target=beat)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


CLI_SCENARIOS = {
    # name: (arguments, extra environment, expected exit code)
    "download, warm start and ls": (["fetch", TINY], {}, 0),
    "unknown repository": (["fetch", "org/missing"], {}, 1),
    "Hub answers 500 to everything": (["fetch", TINY], {}, 1),
    "Hub echoes the token in its errors": (["fetch", TINY], {}, 1),
    "not enough space": (["fetch", TINY], {"VOLCACHE_FREE_MARGIN": "1000TB"}, 1),
    "lease held by a live worker": (["fetch", TINY], {"VOLCACHE_LEASE_MAX_WAIT": "1"}, 1),
    "bad configuration": (["fetch", TINY], {"VOLCACHE_LEASE_TIMEOUT": "soon"}, 1),
    "hostile listing": (["fetch", TINY], {}, 1),
}


@pytest.mark.parametrize("name", list(CLI_SCENARIOS))
def test_the_token_never_reaches_the_cli_output_or_the_volume(
    name: str, tmp_path: Path, volume: Path, hub: HubEmulator, trial_log: TrialLog
) -> None:
    args, extra, code = CLI_SCENARIOS[name]
    with trial_log.trial("HF_TOKEN in logs, errors, records") as trial:
        trial.note = name
        if name == "Hub answers 500 to everything":
            hub.faults = Faults(status=500)
        if name == "hostile listing":
            hub.faults = Faults(tree_override=[{"type": "file", "path": "../x", "size": 1, "oid": "a" * 40}])
        with HostileHub(hub.url, _echo_token if "echoes" in name else _no_change) as proxy:
            env = subprocess_env(volume, HF_ENDPOINT=proxy.url, HF_TOKEN=TOKEN, **VERBOSE, **extra)
            with _live_foreign_lease(volume) if "lease" in name else contextlib.nullcontext():
                runs = [run_cli(*args, env=env, timeout=120)]
                if code == 0:
                    runs += [run_cli(*args, env=env), run_cli("ls", env=env), run_cli("ls", "--json", env=env)]
        assert runs[0].returncode == code, runs[0].stderr[-3000:]
        output = "".join(r.stdout + r.stderr for r in runs)
        assert TOKEN not in output, f"the token leaked into the output of {name}"
        if "echoes" in name:  # the Hub's message is quoted, with the token masked
            assert "invalid credentials: Bearer hf_***" in output, output[-2000:]
        if name not in ("bad configuration", "not enough space") and "lease" not in name:
            assert f"Bearer {TOKEN}" in proxy.state.authorizations, "the token was never sent: the test proves nothing"
        leaked = _files_holding(tmp_path, TOKEN)
        assert leaked == [], f"the token was written to {leaked}"


@pytest.mark.parametrize(
    ("faults", "rewrite"),
    [
        (Faults(cut_after=1000, only="*.safetensors"), _no_change),
        (Faults(corrupt=True), _no_change),
        (Faults(status=503, only="*.safetensors"), _no_change),
        (Faults(), _echo_token_on_weights),
    ],
    ids=["cut", "corrupt", "5xx-on-a-file", "token-echoed-for-a-file"],
)
def test_the_token_never_reaches_log_records_or_exceptions(
    faults: Faults,
    rewrite: Rewrite,
    tmp_path: Path,
    volume: Path,
    hub: HubEmulator,
    trial_log: TrialLog,
    caplog: pytest.LogCaptureFixture,
    fast_retries: None,
    request: pytest.FixtureRequest,
) -> None:
    with trial_log.trial("HF_TOKEN in logs, errors, records") as trial:
        trial.note = f"in-process: {request.node.callspec.id}"
        hub.faults = faults
        # Every level of volcache's and huggingface_hub's loggers, INFO and above of all others
        # (httpcore's DEBUG wire trace prints raw response headers, the echoed token with them).
        caplog.set_level(logging.INFO)
        for name in ("volcache", "huggingface_hub"):
            caplog.set_level(1, logger=name)
        with HostileHub(hub.url, rewrite) as proxy:
            store = ModelStore(make_settings(volume, HF_ENDPOINT=proxy.url, HF_TOKEN=TOKEN))
            with pytest.raises(StoreError) as err:
                store.resolve(TINY)
        assert f"Bearer {TOKEN}" in proxy.state.authorizations
        shown = "".join(traceback.format_exception(err.value))
        assert TOKEN not in shown, "the token is in the error or its traceback"
        assert TOKEN not in caplog.text, "the token is in a log record"
        assert _files_holding(tmp_path, TOKEN) == []


def test_settings_never_show_the_token() -> None:
    settings = Settings.from_env({"HF_TOKEN": TOKEN})
    assert settings.hf_token == TOKEN
    assert TOKEN not in repr(settings) and TOKEN not in str(settings)
    assert settings.redact(f"url?token={TOKEN}") == "url?token=hf_***"
