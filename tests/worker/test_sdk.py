"""Importing RunPod's SDK with py-cpuinfo's probe started early (`volcache.worker._sdk`)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest

from volcache.worker._sdk import SdkImport

REAL = r"""
import json, sys, time
from volcache.worker._sdk import SdkImport

sdk = SdkImport()
sdk.begin()
assert "runpod" not in sys.modules
time.sleep(3)  # the model's imports would run here
import subprocess
spawned = []
plain_popen = subprocess.Popen
class CountingPopen(plain_popen):
    def __init__(self, args, *a, **k):
        spawned.append([str(x) for x in args])
        super().__init__(args, *a, **k)
subprocess.Popen = CountingPopen
runpod = sdk.finish()
subprocess.Popen = plain_popen
import cpuinfo
from runpod.serverless.utils import rp_debugger
print(json.dumps({
    "early": sdk.early,
    "spawned_during_import": spawned,
    "processor": rp_debugger.PROCESSOR,
    "restored": cpuinfo.get_cpu_info.__module__ == "cpuinfo.cpuinfo",
    "serverless": hasattr(runpod.serverless, "start"),
}))
"""


def test_the_real_sdk_gets_the_early_answer_and_py_cpuinfo_is_put_back() -> None:
    proc = subprocess.run([sys.executable, "-c", REAL], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["early"] is True and got["restored"] is True and got["serverless"] is True
    # The same answer runpod finds by itself, in a process of its own.
    plain = subprocess.run(
        [sys.executable, "-c", "from runpod.serverless.utils import rp_debugger as d; print(d.PROCESSOR)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.returncode == 0, plain.stderr
    assert got["processor"] == plain.stdout.strip()
    # The probe's second interpreter ran beside the sleep, not inside the import.
    assert not [args for args in got["spawned_during_import"] if any("cpuinfo" in a for a in args)], got


class FakeModules:
    """A py-cpuinfo and a runpod of our own, in sys.modules and on sys.path, for the paths real ones seldom take."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, probe: Any) -> None:
        self.calls: list[str] = []
        cpuinfo = types.ModuleType("cpuinfo")

        def get_cpu_info() -> Any:
            self.calls.append(threading.current_thread().name)
            return probe()

        cpuinfo.get_cpu_info = get_cpu_info  # type: ignore[attr-defined]
        self.cpuinfo = cpuinfo
        monkeypatch.setitem(sys.modules, "cpuinfo", cpuinfo)
        monkeypatch.delitem(sys.modules, "runpod", raising=False)
        package = root / "runpod"
        package.mkdir()
        (package / "__init__.py").write_text("import cpuinfo\nPROCESSOR = cpuinfo.get_cpu_info()['brand_raw']\n")
        monkeypatch.syspath_prepend(str(root))


def test_the_sdk_sees_the_early_answer_once_and_later_calls_probe_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeModules(tmp_path, monkeypatch, lambda: {"brand_raw": "Early CPU"})
    sdk = SdkImport()
    sdk.begin()
    runpod = sdk.finish()
    assert runpod.PROCESSOR == "Early CPU" and sdk.early
    assert fake.calls == ["volcache-cpuinfo"]  # probed on the thread, not during the import
    assert sdk.finish() is runpod  # imported once
    fake.cpuinfo.get_cpu_info()
    assert fake.calls == ["volcache-cpuinfo", "MainThread"]  # py-cpuinfo is its own again


def test_a_failed_early_probe_leaves_the_sdk_to_probe_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([RuntimeError("no /proc/cpuinfo"), {"brand_raw": "Late CPU"}])

    def probe() -> Any:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    fake = FakeModules(tmp_path, monkeypatch, probe)
    sdk = SdkImport()
    sdk.begin()
    runpod = sdk.finish()
    assert runpod.PROCESSOR == "Late CPU" and not sdk.early
    assert fake.calls == ["volcache-cpuinfo", "MainThread"]


def test_without_py_cpuinfo_the_sdk_is_imported_the_plain_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cpuinfo", None)  # `import cpuinfo` raises ImportError
    monkeypatch.delitem(sys.modules, "runpod", raising=False)
    (tmp_path / "runpod").mkdir()
    (tmp_path / "runpod" / "__init__.py").write_text("PROCESSOR = 'none asked'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sdk = SdkImport()
    sdk.begin()
    assert sdk.finish().PROCESSOR == "none asked" and not sdk.early


def test_an_sdk_already_imported_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    already = types.ModuleType("runpod")
    monkeypatch.setitem(sys.modules, "runpod", already)
    sdk = SdkImport()
    sdk.begin()
    assert sdk.finish() is already and not sdk.early
