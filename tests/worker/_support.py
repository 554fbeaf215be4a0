"""Running the worker as RunPod runs it locally: `--rp_serve_api` servers and `--test_input` jobs.

Every worker runs in a subprocess with its own volume, HOME, TMPDIR and ephemeral folder, so a
test can scan those afterwards for weight bytes that should not be there.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import subprocess_env
from volcache.worker import RESULT_PREFIX, STARTED_PREFIX, StartupReport

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TINY_LM = "volcache-tests/tiny-llama"
TINY_CLASSIFIER = "volcache-tests/tiny-sentiment"
START_TIMEOUT = 240.0
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5", ".msgpack")


class Sandbox:
    """The folders one worker may touch: the volume, and the container-disk places it must leave alone."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.volume = base / "volume"
        self.home = base / "home"
        self.tmp = base / "tmp"
        self.ephemeral = base / "ephemeral"
        for folder in (self.volume, self.home, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        return subprocess_env(
            self.volume,
            HOME=str(self.home),
            TMPDIR=str(self.tmp),
            VOLCACHE_EPHEMERAL=str(self.ephemeral),
            RUNPOD_DEBUG_LEVEL="INFO",
            UVICORN_LOG_LEVEL="warning",
            **extra,
        )

    def container_disk(self) -> list[Path]:
        return [self.home, self.tmp, self.ephemeral]


def weight_files(*roots: Path) -> list[tuple[Path, int]]:
    """Regular files (never links) under `roots` that hold weights: weight suffixes and cache blobs."""
    found = []
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath, name)
                st = path.lstat()
                if (
                    not path.is_symlink()
                    and st.st_size > 0
                    and (name.endswith(WEIGHT_SUFFIXES) or path.parent.name == "blobs")
                ):
                    found.append((path, st.st_size))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerServer:
    """`python -m volcache.worker --rp_serve_api` in a subprocess, with real HTTP to RunPod's local API."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "volcache.worker", "--rp_serve_api", "--rp_api_port", str(self.port)]
        command += ["--rp_api_host", "127.0.0.1"]
        self.proc = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @classmethod
    @contextlib.contextmanager
    def running(cls, env: dict[str, str], log_path: Path) -> Iterator[WorkerServer]:
        server = cls(env, log_path)
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the worker exited with status {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/openapi.json", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"the worker did not serve within {timeout}s:\n{self.log()[-4000:]}")

    def post(self, path: str, body: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data = json.load(response)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"POST {path} -> {exc.code}: {exc.read().decode()[:500]}") from None
        assert isinstance(data, dict)
        return data

    def runsync(self, job_input: Any) -> list[Any]:
        """The outputs of one job: RunPod's `/runsync` aggregates a generator handler's yields in a list."""
        response = self.post("/runsync", {"input": job_input})
        assert response["status"] == "COMPLETED", response
        output = response["output"]
        assert isinstance(output, list), response
        return output

    def one(self, job_input: Any) -> Any:
        """The single output of a job that does not stream."""
        outputs = self.runsync(job_input)
        assert len(outputs) == 1, outputs
        return outputs[0]

    def started(self) -> dict[str, Any]:
        line = next(line for line in self.log().splitlines() if STARTED_PREFIX in line)
        return StartupReport.parse(line)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self._log.close()


class TestInputRun:
    """The outcome of `python -m volcache.worker --test_input JSON`, RunPod's one-job local mode."""

    __test__ = False  # not a pytest class

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.proc = proc
        self.output = proc.stdout + proc.stderr

    @property
    def result(self) -> Any:
        line = next(line for line in self.proc.stdout.splitlines() if line.startswith(RESULT_PREFIX))
        return json.loads(line[len(RESULT_PREFIX) :])

    @property
    def started(self) -> dict[str, Any]:
        line = next(line for line in self.output.splitlines() if STARTED_PREFIX in line)
        return StartupReport.parse(line)


def run_test_input(env: dict[str, str], job_input: Any, timeout: float = 300) -> TestInputRun:
    command = [sys.executable, "-m", "volcache.worker", "--test_input", json.dumps({"input": job_input})]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    return TestInputRun(proc)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    return dot / norm


def sse_chunks(outputs: list[Any]) -> tuple[list[dict[str, Any]], bool]:
    """The JSON chunks of streamed OpenAI output (server-sent-event text) and whether `[DONE]` ended it."""
    text = "".join(outputs)
    events = [e.removeprefix("data: ") for e in text.split("\n\n") if e.strip()]
    done = bool(events) and events[-1] == "[DONE]"
    return [json.loads(e) for e in events if e != "[DONE]"], done
