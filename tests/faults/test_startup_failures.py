"""A worker that cannot start (issue 12, items 3 and 13).

- No network volume: a WARNING at start, `"volume_mounted": false` in the start-up line, the bytes
  counted as container disk; `VOLCACHE_REQUIRE_VOLUME=1` refuses to start.
- A cause a restart cannot fix (no such model, bad settings): the worker stays up and answers every
  job with the cause in one sentence, logged once; a cause that may heal (the Hub does not answer)
  exits non-zero so the platform retries.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.faults._support import TrialLog
from tests.worker._support import Sandbox, WorkerServer
from volcache import ModelStore, Resolution, Settings, VolumeNotMounted
from volcache.testing import HubEmulator
from volcache.worker import _startup as startup

pytestmark = pytest.mark.faults


def _fake_phases(monkeypatch: pytest.MonkeyPatch, snapshot: Path) -> list[str]:
    """Replace the model's load and the download by fakes: only the volume check and the report are real."""
    calls: list[str] = []

    class Store:
        hold = ModelStore.hold

        def __init__(self, s: Settings) -> None:
            self.settings = s

        def resolve(self) -> Resolution:
            calls.append("ensure")
            (snapshot.parent.parent / "blobs").mkdir(parents=True, exist_ok=True)
            return Resolution("org/name", "main", snapshot, "local")

        def find_local(self, model: str, revision: str) -> Resolution:
            return Resolution(model, revision, snapshot, "local")

        def mark_used(self, resolution: Resolution) -> None:
            pass

    class Task:
        name = "embeddings"

        def warmup(self) -> None:
            pass

    monkeypatch.setattr(startup, "pin", lambda s: calls.append("pin"))
    monkeypatch.setattr(startup, "ModelStore", Store)
    monkeypatch.setattr(startup, "go_offline", lambda: None)
    monkeypatch.setattr(startup, "load_task", lambda ctx: Task())
    monkeypatch.setattr(startup, "load_context", lambda *a, **k: type("Ctx", (), {"device": "cpu"})())
    return calls


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_worker_without_a_mounted_volume_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trial_log: TrialLog
) -> None:
    with trial_log.trial("start-up: volume not mounted", item="12.3"):
        volume = tmp_path / "volume"
        blob = volume / "models/hub/models--org--name/blobs/w"
        blob.parent.mkdir(parents=True)
        blob.write_bytes(b"w" * 1000)
        snapshot = volume / "models/hub/models--org--name/snapshots/abc"
        snapshot.mkdir(parents=True)
        _fake_phases(monkeypatch, snapshot)
        settings = make_settings(volume, MODEL_TASK="embeddings", VOLCACHE_ASSUME_VOLUME="0")
        seen = _Records()
        logging.getLogger("volcache.worker").addHandler(seen)  # volcache's own handler does not propagate
        try:
            _, report = startup.prepare(settings)
        finally:
            logging.getLogger("volcache.worker").removeHandler(seen)
        warnings = [r.getMessage() for r in seen.records if r.levelno == logging.WARNING]
        assert any("is not a mount point" in w and "every worker downloads its own copy" in w for w in warnings)
        line = startup.StartupReport.parse(report.log_line())
        assert line["volume_mounted"] is False
        assert line["disk"]["volume_bytes"] == 0 and line["disk"]["container_disk_weight_bytes"] == 1000


def test_require_volume_refuses_to_start_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trial_log: TrialLog
) -> None:
    with trial_log.trial("start-up: VOLCACHE_REQUIRE_VOLUME=1 without a volume", item="12.3"):
        volume = tmp_path / "volume"
        volume.mkdir()
        calls = _fake_phases(monkeypatch, volume / "snap")
        settings = make_settings(volume, VOLCACHE_ASSUME_VOLUME="0", VOLCACHE_REQUIRE_VOLUME="1")
        with pytest.raises(VolumeNotMounted) as err:
            startup.prepare(settings)
        assert not err.value.retryable and calls == [] and list(volume.iterdir()) == []


def _cannot_start(sandbox: Sandbox, hub: HubEmulator, log: Path, **env: str) -> list[Any]:
    with WorkerServer.running(sandbox.env(HF_ENDPOINT=hub.url, MODEL_TASK="embeddings", **env), log) as server:
        answers = [server.one({"input": ["a"]}), server.one({"input": ["b"]})]
        assert server.proc.poll() is None, "the worker must stay up"
    return answers


@pytest.mark.parametrize(
    ("cause", "env", "said"),
    [
        ("missing model", {"MODEL_NAME": "org/missing"}, "org/missing was not found"),
        ("bad settings", {"VOLCACHE_LEASE_TIMEOUT": "soon"}, "VOLCACHE_LEASE_TIMEOUT='soon' is not a number"),
    ],
)
def test_a_cause_a_restart_cannot_fix_is_answered_job_by_job(
    cause: str, env: dict[str, str], said: str, tmp_path: Path, hub: HubEmulator, trial_log: TrialLog
) -> None:
    with trial_log.trial(f"start-up: {cause}, answered job by job", item="12.13"):
        sandbox = Sandbox(tmp_path)
        log = tmp_path / "worker.log"
        answers = _cannot_start(sandbox, hub, log, **env)
        for answer in answers:
            assert set(answer) == {"error"} and said in answer["error"] and "\n" not in answer["error"], answer
        text = log.read_text()
        assert text.count("the worker cannot start") == 1 and "Traceback" not in text
        assert list(sandbox.volume.rglob("*.safetensors")) == []


def test_a_cause_that_may_heal_exits_non_zero(tmp_path: Path, trial_log: TrialLog) -> None:
    with trial_log.trial("start-up: the Hub does not answer, exit 1", item="12.13"):
        sandbox = Sandbox(tmp_path)
        env = sandbox.env(HF_ENDPOINT="http://127.0.0.1:9", MODEL_NAME="org/tiny", MODEL_TASK="embeddings")
        proc = subprocess.run(
            [sys.executable, "-m", "volcache.worker", "--test_input", '{"input": {"input": ["a"]}}'],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("volcache: error: the Hub at http://127.0.0.1:9 did not answer"), last
