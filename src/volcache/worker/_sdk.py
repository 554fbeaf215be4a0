"""Import RunPod's SDK without waiting on its CPU probe.

`import runpod` takes about 1.6 s, and 1.1 s of it is one call: `runpod.serverless.utils.rp_debugger`
asks py-cpuinfo for the processor's name at import time, and py-cpuinfo answers by starting a
second Python interpreter (`python cpuinfo.py --json`) and waiting for it. That wait sits between
the model being ready and the first job.

`SdkImport.begin()` makes the same call on a background thread as soon as the worker starts, so the
probe runs beside the model's imports; `SdkImport.finish()` then imports runpod with py-cpuinfo
answering from that result, and puts py-cpuinfo back as it was. The answer is the one runpod would
have got (the same function, in the same process, a few seconds earlier). Only py-cpuinfo runs on
the thread, never an import of runpod or of the model's libraries, so the two threads never import
the same modules at once. Where anything is missing or fails, runpod is imported the plain way.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

log = logging.getLogger("volcache")

_WAIT_S = 30.0  # longest the import waits for the early probe before runpod probes by itself


class SdkImport:
    """`begin()` early, `finish()` when the SDK is needed; `seconds` is what `finish()` took."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._cpuinfo: Any = None  # the py-cpuinfo module
        self._answer: dict[str, Any] | None = None
        self.seconds = 0.0
        self.early = False  # True where py-cpuinfo answered from the early probe
        self._module: ModuleType | None = None

    def begin(self) -> None:
        """Start py-cpuinfo's probe on a daemon thread, if runpod is not imported yet."""
        if "runpod" in sys.modules or self._thread is not None:
            return
        try:
            # Imported here, on the calling thread, so the probe thread imports nothing of its own.
            import json  # noqa: F401  (py-cpuinfo imports these inside the call)
            import subprocess  # noqa: F401

            self._cpuinfo = importlib.import_module("cpuinfo")
        except Exception:  # py-cpuinfo missing or broken: runpod will say so itself
            return
        self._thread = threading.Thread(target=self._probe, name="volcache-cpuinfo", daemon=True)
        self._thread.start()

    def _probe(self) -> None:
        assert self._cpuinfo is not None
        try:
            answer = self._cpuinfo.get_cpu_info()
        except Exception as exc:  # runpod probes again, and reports its own failure
            log.debug("volcache: early CPU probe failed (%s); runpod will probe itself", exc)
            return
        if isinstance(answer, dict):
            self._answer = answer

    def finish(self) -> ModuleType:
        """Import runpod (with the early answer where there is one) and return it; once."""
        if self._module is not None:
            return self._module
        began = time.perf_counter()
        try:
            with self._answered():
                module = importlib.import_module("runpod")
        finally:
            self.seconds = time.perf_counter() - began
        self._module = module
        return module

    @contextlib.contextmanager
    def _answered(self) -> Iterator[None]:
        module, thread = self._cpuinfo, self._thread
        if module is None or thread is None or "runpod" in sys.modules:
            yield
            return
        thread.join(_WAIT_S)
        answer = self._answer
        if answer is None:
            yield
            return
        original = module.get_cpu_info

        def get_cpu_info() -> dict[str, Any]:
            return copy.deepcopy(answer)

        module.get_cpu_info = get_cpu_info  # for the length of the import only
        self.early = True
        try:
            yield
        finally:
            module.get_cpu_info = original
