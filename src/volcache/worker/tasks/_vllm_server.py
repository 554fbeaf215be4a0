"""The `vllm serve` child process: started on the loopback, waited for, spoken to over HTTP, never outliving us.

The command runs under `_child_guard.py`, the leader of its own process group, so one signal
reaches `vllm serve` and the engine processes it spawns. It dies with the worker however the
worker ends: `stop()` runs at exit (atexit, and SIGTERM is turned into an exit where nobody else
handles it), and when the worker is killed outright (SIGKILL, no clean-up) the kernel signals the
guard (`PR_SET_PDEATHSIG`, Linux), which ends the whole group. The kernel's signal alone would
reach `vllm serve` only: its engine processes survived it in a test.

Requests use the standard library's `http.client`, one connection per request: each job runs
in its own thread, and a blocking client is what the task interface runs there.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from ..._errors import VolcacheError

log = logging.getLogger("volcache.worker")

HOST = "127.0.0.1"
GUARD = Path(__file__).with_name("_child_guard.py")
_STOP_GRACE_S = 15.0  # longer than the guard's own grace


class EngineStartError(VolcacheError, RuntimeError):
    """`vllm serve` exited or never became healthy."""


class EngineResponseError(Exception):
    """`vllm serve` answered with an HTTP error; `status` and vLLM's own message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def free_port() -> int:
    """A loopback port nobody listens on now (the child binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class VllmServer:
    """One `vllm serve` child on `127.0.0.1:port`."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], port: int) -> None:
        self.command = list(command)
        self.port = port
        self._stopped = threading.Event()
        log.info("volcache: starting %s", " ".join(self.command))
        guarded = [sys.executable, str(GUARD), str(os.getpid()), "--", *self.command]
        # Its output is the worker's: vLLM's log lines land in the worker log.
        self.proc = subprocess.Popen(guarded, env=dict(env), start_new_session=True)
        atexit.register(self.stop)
        _exit_on_sigterm()

    # -- life --------------------------------------------------------------------------------
    def wait_ready(self, timeout: float) -> float:
        """Block until `/health` answers 200; the seconds it took. Raises if the child exits or time runs out."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            code = self.proc.poll()
            if code is not None:
                raise EngineStartError(f"vllm serve exited with status {code} during start-up; its log is above.")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self._status("/health") == 200:
                    return time.monotonic() - began
            time.sleep(0.25)
        self.stop()
        raise EngineStartError(f"vllm serve was not healthy within {timeout:.0f}s (VLLM_STARTUP_TIMEOUT).")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM to the child's process group, SIGKILL after a grace period; idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning("volcache: vllm serve ignored SIGTERM for %.0fs; killing it", _STOP_GRACE_S)
        _signal_group(self.proc.pid, signal.SIGKILL)  # the engine processes, should any linger
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=_STOP_GRACE_S)

    # -- requests ----------------------------------------------------------------------------
    def request(self, method: str, route: str, body: Mapping[str, Any] | None, timeout: float) -> Any:
        """One JSON request; vLLM's JSON answer, or `EngineResponseError` for an HTTP error."""
        conn = self._connection(timeout)
        try:
            response = self._send(conn, method, route, body)
            payload = response.read()
            if response.status >= 400:
                raise EngineResponseError(response.status, _error_message(payload))
            return json.loads(payload)
        finally:
            conn.close()

    def stream(self, route: str, body: Mapping[str, Any], timeout: float) -> Iterator[str]:
        """A streamed request: each server-sent event as vLLM wrote it (`data: {...}\\n\\n`), `[DONE]` included."""
        conn = self._connection(timeout)
        try:
            response = self._send(conn, "POST", route, body)
            if response.status >= 400:
                raise EngineResponseError(response.status, _error_message(response.read()))
            event: list[bytes] = []
            for line in response:
                if line.strip():
                    event.append(line.rstrip(b"\r\n"))
                elif event:
                    yield b"\n".join(event).decode("utf-8", errors="replace") + "\n\n"
                    event = []
            if event:
                yield b"\n".join(event).decode("utf-8", errors="replace") + "\n\n"
        finally:
            conn.close()  # a client that went away closes the stream: vLLM aborts the request

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout)

    def _send(
        self, conn: http.client.HTTPConnection, method: str, route: str, body: Mapping[str, Any] | None
    ) -> http.client.HTTPResponse:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, route, body=data, headers=headers)
        return conn.getresponse()

    def _status(self, route: str) -> int:
        conn = self._connection(5.0)
        try:
            conn.request("GET", route)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()


def _error_message(payload: bytes) -> str:
    """vLLM's error sentence from its JSON error body (`{"error": {"message": ...}}` or older shapes)."""
    text = payload.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "no message"
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(data.get("detail"), str):
            return str(data["detail"])
    return text.strip()[:500]


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _exit_on_sigterm() -> None:
    """Where SIGTERM would kill the worker outright, make it an exit, so atexit stops the child."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # someone handles it already (RunPod's SDK, a test harness): their exit runs atexit

    def exit_now(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_now)
