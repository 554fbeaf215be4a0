"""The vLLM task without vLLM: job shapes, the engine choice, the launch plan, and the child's life.

The child-process tests start a stand-in for `vllm serve` (a small HTTP server with `/health`,
a JSON route, a streamed route and an error), which also forks a grandchild, as vLLM's engine
process is: stopping the server must stop both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import make_settings
from volcache import ConfigError
from volcache.worker.tasks import TASKS, task_class
from volcache.worker.tasks._vllm_server import EngineResponseError, EngineStartError, VllmServer, free_port
from volcache.worker.tasks.base import JobContext, JobError
from volcache.worker.tasks.vllm import EngineLaunch, VllmRequest, VllmTask, choose_engine, served_name

FAKE_SERVE = textwrap.dedent(
    """
    import http.server, json, os, sys, time
    port = int(sys.argv[1])
    if os.fork() == 0:  # the "engine process": lives until it is signalled
        while True:
            time.sleep(1)
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass
        def _send(self, status, body, kind="application/json"):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def do_GET(self):
            if self.path == "/health":
                self._send(200, "")
            else:
                self._send(200, json.dumps({"object": "list", "data": [{"id": "m"}]}))
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body.get("max_tokens", 0) > 100:
                self._send(400, json.dumps({"error": {"message": "max_tokens is too large", "code": 400}}))
            elif body.get("stream"):
                events = "".join(f"data: {json.dumps({'n': i})}\\n\\n" for i in range(3)) + "data: [DONE]\\n\\n"
                self._send(200, events, "text/event-stream")
            else:
                self._send(200, json.dumps({"echo": body}))
    time.sleep(float(os.environ.get("FAKE_DELAY", "0")))
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)


KILLED_WORKER = textwrap.dedent(
    """
    import os, sys, time
    from volcache.worker.tasks._vllm_server import VllmServer, free_port
    port = free_port()
    server = VllmServer([sys.executable, sys.argv[1], str(port)], dict(os.environ), port)
    server.wait_ready(30)
    print(server.proc.pid, flush=True)
    time.sleep(600)
    """
)


def fake_task(settings_env: dict[str, str] | None = None) -> VllmTask:
    """A task whose `decode`/`openai` can be called without a child (they never touch it)."""
    settings = make_settings(Path("/nonexistent-volume"), **(settings_env or {}))
    launch = EngineLaunch(command=[], env={}, port=0, served_name="org/served", cache=None)  # type: ignore[arg-type]
    return VllmTask(None, launch, settings, None)  # type: ignore[arg-type]


# -- job shapes -----------------------------------------------------------------------------------
def test_worker_vllms_native_shapes_become_vllm_serves_requests() -> None:
    task = fake_task()
    chat = task.decode({"messages": [{"role": "user", "content": "hi"}], "sampling_params": {"max_tokens": 3}})
    assert chat == VllmRequest(
        "/v1/chat/completions",
        "POST",
        {"max_tokens": 3, "stream": False, "messages": [{"role": "user", "content": "hi"}], "model": "org/served"},
        False,
    )
    prompt = task.decode({"prompt": "why", "stream": True})
    assert (prompt.route, prompt.stream, prompt.body) == (
        "/v1/completions",
        True,
        {"stream": True, "prompt": "why", "model": "org/served"},
    )
    assert task.streams(prompt) and not task.streams(chat)


def test_an_explicit_model_in_the_body_is_kept() -> None:
    request = fake_task().decode({"prompt": "x", "sampling_params": {"model": "lora-a"}})
    assert request.body is not None and request.body["model"] == "lora-a"


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({}, "either"),
        ({"prompt": "a", "messages": []}, "not both"),
        ({"prompt": 3}, '"prompt" must be a string'),
        ({"messages": "hi"}, '"messages" must be a list'),
        ({"prompt": "a", "sampling_params": [1]}, '"sampling_params" must be an object'),
        ({"prompt": "a", "stream": "yes"}, '"stream" must be true or false'),
        ({"prompt": "a", "max_tokens": 3}, "Unknown field(s) max_tokens"),
    ],
)
def test_a_bad_native_job_is_one_job_error(payload: dict[str, object], says: str) -> None:
    with pytest.raises(JobError, match=None) as caught:
        fake_task().decode(payload)  # type: ignore[arg-type]
    assert says in str(caught.value)


def test_openai_routes_are_answered_by_vllm_and_others_left_to_the_adapter() -> None:
    task = fake_task()
    call = task.openai("/v1/chat/completions", {"messages": [], "stream": True})
    assert call is not None and call.stream
    assert task.openai("/v1/completions", {"prompt": "a"}) is not None
    models = task.openai("/v1/models", {})
    assert models is not None and not models.stream
    assert task.openai("/v1/embeddings", {"input": "a"}) is None


# -- engine choice and launch plan -------------------------------------------------------------
def test_the_engine_is_explicit_else_vllm_only_with_a_gpu_and_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    from volcache.worker.tasks import vllm

    vol = Path("/nonexistent-volume")
    monkeypatch.setattr(vllm, "vllm_installed", lambda: True)
    assert choose_engine(make_settings(vol), "text-generation", "cuda") == "vllm"
    assert choose_engine(make_settings(vol), "text-generation", "cpu") == "transformers"
    assert choose_engine(make_settings(vol), "embeddings", "cuda") == "transformers"
    assert choose_engine(make_settings(vol, MODEL_ENGINE="transformers"), "text-generation", "cuda") == "transformers"
    assert choose_engine(make_settings(vol, MODEL_ENGINE="vllm"), "text-generation", "cpu") == "vllm"
    with pytest.raises(ConfigError, match="serves text generation"):
        choose_engine(make_settings(vol, MODEL_ENGINE="vllm"), "embeddings", "cuda")
    monkeypatch.setattr(vllm, "vllm_installed", lambda: False)
    assert choose_engine(make_settings(vol), "text-generation", "cuda") == "transformers"
    with pytest.raises(ConfigError, match="MODEL_ENGINE=vllm, but vLLM is not installed"):
        choose_engine(make_settings(vol, MODEL_ENGINE="vllm"), "text-generation", "cuda")
    with pytest.raises(ConfigError, match="MODEL_ENGINE='tgi' is not one of vllm, transformers"):
        make_settings(vol, MODEL_ENGINE="tgi")


def test_the_registry_names_the_vllm_engine() -> None:
    assert TASKS[("text-generation", "vllm")] == "volcache.worker.tasks.vllm:VllmTask"
    assert task_class("text-generation", "vllm") is VllmTask
    assert task_class("text-generation", "transformers").__name__ == "GenerationTask"


def test_the_launch_serves_the_snapshot_under_the_served_name_with_caches_on_the_volume(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "volume",
        MODEL_NAME="org/model",
        OPENAI_SERVED_MODEL_NAME_OVERRIDE="my-model",
        MAX_MODEL_LEN="4096",
        VOLCACHE_EPHEMERAL=str(tmp_path / "eph"),
    )
    snapshot = tmp_path / "volume" / "models" / "hub" / "models--org--model" / "snapshots" / "abc"
    launch = EngineLaunch.plan(settings, snapshot, "cpu", "read")
    assert launch.command[1:4] == ["-m", "vllm.entrypoints.cli.main", "serve"]
    assert launch.command[4] == str(snapshot) and "org/model" not in launch.command
    assert launch.served_name == "my-model"
    assert launch.command[-2:] == ["--max-model-len", "4096"]
    assert "--safetensors-load-strategy" in launch.command and "eager" in launch.command
    assert launch.cache.shared.parent == tmp_path / "volume" / "models" / "compile"
    assert Path(launch.env["VLLM_CACHE_ROOT"]).is_relative_to(tmp_path / "eph")
    assert launch.env["HF_HUB_OFFLINE"] == "1"
    # Another port or load strategy (it follows the page cache), same engine arguments: the same compile cache.
    other = EngineLaunch.plan(settings, snapshot, "cpu", "mmap")
    assert other.port != launch.port and other.cache.key == launch.cache.key
    longer = make_settings(tmp_path / "volume", MODEL_NAME="org/model", MAX_MODEL_LEN="8192")
    assert EngineLaunch.plan(longer, snapshot, "cpu", "read").cache.key != launch.cache.key


def test_served_name_and_a_foreign_tokenizer(tmp_path: Path) -> None:
    assert served_name({"SERVED_MODEL_NAME": "x"}, "org/m") == "x"
    assert served_name({}, "org/m") == "org/m"
    settings = make_settings(tmp_path, MODEL_NAME="org/m", TOKENIZER_NAME="org/other-tokenizer")
    with pytest.raises(ConfigError, match="TOKENIZER_NAME='org/other-tokenizer' is not supported"):
        EngineLaunch.plan(settings, tmp_path, "cpu", "mmap")


# -- the child ---------------------------------------------------------------------------------
@pytest.fixture
def fake_serve(tmp_path: Path) -> Path:
    script = tmp_path / "fake_serve.py"
    script.write_text(FAKE_SERVE)
    return script


def start(script: Path, **env: str) -> VllmServer:
    port = free_port()
    return VllmServer([sys.executable, str(script), str(port)], {**os.environ, **env}, port)


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_child_serves_json_streams_and_errors_then_stops_with_its_group(fake_serve: Path) -> None:
    server = start(fake_serve)
    try:
        assert server.wait_ready(30) < 30
        assert server.request("POST", "/v1/completions", {"a": 1}, 10) == {"echo": {"a": 1}}
        assert server.request("GET", "/v1/models", None, 10)["data"] == [{"id": "m"}]
        events = list(server.stream("/v1/completions", {"stream": True}, 10))
        assert events == ['data: {"n": 0}\n\n', 'data: {"n": 1}\n\n', 'data: {"n": 2}\n\n', "data: [DONE]\n\n"]
        with pytest.raises(EngineResponseError, match="max_tokens is too large") as caught:
            server.request("POST", "/v1/completions", {"max_tokens": 1000}, 10)
        assert caught.value.status == 400
    finally:
        server.stop()
    deadline = time.monotonic() + 10
    while not _group_gone(server.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_gone(server.proc.pid), "the child's grandchild outlived stop()"
    server.stop()  # idempotent


def test_a_worker_killed_outright_takes_the_childs_whole_group_with_it(fake_serve: Path) -> None:
    """SIGKILL runs no clean-up: the kernel signals the guard, which ends the child and its grandchild."""
    worker = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, str(fake_serve)], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        group = int(worker.stdout.readline())
        assert not _group_gone(group)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 20
        while not _group_gone(group) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _group_gone(group), "the child's process group outlived the killed worker"
    finally:
        if worker.poll() is None:
            worker.kill()


def test_a_client_error_is_a_job_error_and_the_task_keeps_serving(fake_serve: Path) -> None:
    server = start(fake_serve)
    try:
        server.wait_ready(30)
        task = fake_task()
        task.server = server
        job = JobContext("j1", "org/served")
        bad = task.decode({"prompt": "a", "sampling_params": {"max_tokens": 1000}})
        with pytest.raises(JobError, match=r"vLLM refused the request \(HTTP 400\): max_tokens is too large"):
            list(task.run(bad, job))
        good = task.decode({"prompt": "a", "stream": True})
        assert list(task.run(good, job))[-1] == "data: [DONE]\n\n"
    finally:
        server.stop()


def test_a_child_that_exits_during_start_up_is_one_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "dies.py"
    script.write_text("import sys; sys.exit(3)\n")
    server = VllmServer([sys.executable, str(script)], dict(os.environ), free_port())
    with pytest.raises(EngineStartError, match="vllm serve exited with status 3 during start-up"):
        server.wait_ready(30)


def test_a_child_that_never_becomes_healthy_is_stopped(fake_serve: Path) -> None:
    server = start(fake_serve, FAKE_DELAY="60")
    with pytest.raises(EngineStartError, match="not healthy within 1s"):
        server.wait_ready(1)
    assert server.proc.poll() is not None


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("VLLM_STARTUP_TIMEOUT", "soon", "VLLM_STARTUP_TIMEOUT='soon' is not a number of seconds"),
        ("REQUEST_TIMEOUT", "0", "REQUEST_TIMEOUT='0' is not a number of seconds"),
        ("VLLM_PORT", "99999", "VLLM_PORT='99999' is not a port number"),
    ],
)
def test_worker_vllms_own_variables_are_checked(tmp_path: Path, name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        EngineLaunch.plan(make_settings(tmp_path, **{name: value}), tmp_path, "cpu", "mmap")
    assert says in str(caught.value)


def test_worker_vllms_timeouts_and_port_are_used(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, VLLM_STARTUP_TIMEOUT="60", REQUEST_TIMEOUT="5", VLLM_PORT="18555")
    launch = EngineLaunch.plan(settings, tmp_path, "cpu", "mmap")
    assert (launch.startup_timeout, launch.request_timeout, launch.port) == (60.0, 5.0, 18555)
    assert launch.command[launch.command.index("--port") + 1] == "18555"


def test_max_concurrency_is_runpods_concurrency_for_the_vllm_engine() -> None:
    assert fake_task().concurrency == 30  # worker-vllm's default
    assert fake_task({"MAX_CONCURRENCY": "8"}).concurrency == 8
    with pytest.raises(ConfigError, match="MAX_CONCURRENCY='lots' is not a number"):
        fake_task({"MAX_CONCURRENCY": "lots"})
