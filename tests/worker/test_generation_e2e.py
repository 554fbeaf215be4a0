"""The worker on a tiny random Llama (chat template included), downloaded through the Hub emulator.

Greedy decoding of a fixed random model is deterministic, so a streamed answer must equal the
same request unstreamed, chunk by chunk, through both the native and the OpenAI shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from volcache.testing import HubEmulator, mirror_root_with

from ._support import TINY_LM, Sandbox, WorkerServer, run_test_input, sse_chunks, weight_files

pytestmark = pytest.mark.slow
CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello how are you"}]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Iterator[HubEmulator]:
    root = mirror_root_with(tmp_path_factory.mktemp("hub"), {TINY_LM: tiny_models["lm"]})
    with HubEmulator(root) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    return Sandbox(tmp_path_factory.mktemp("generation"))


@pytest.fixture(scope="module")
def server(sandbox: Sandbox, hub: HubEmulator) -> Iterator[WorkerServer]:
    # No MODEL_TASK: the task is detected from config.json (LlamaForCausalLM).
    env = sandbox.env(HF_ENDPOINT=hub.url, MODEL_NAME=TINY_LM, VOLCACHE_MAX_NEW_TOKENS="32")
    with WorkerServer.running(env, sandbox.base / "server.log") as worker:
        yield worker


def test_task_is_detected_from_the_config(server: WorkerServer) -> None:
    report = server.started()
    assert report["task"] == "text-generation"
    assert report["source"] == "download"


def test_prompt_generates_exactly_max_new_tokens(server: WorkerServer) -> None:
    out = server.one({"prompt": "the cat sat on the mat", "max_new_tokens": 6})
    assert out["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 6
    assert len(out["generated_text"].split()) == 6


def test_hf_inference_shape_is_accepted(server: WorkerServer) -> None:
    plain = server.one({"prompt": "hello", "max_new_tokens": 4})
    hf = server.one({"inputs": "hello", "parameters": {"max_new_tokens": 4}})
    assert hf["generated_text"] == plain["generated_text"]


def test_native_stream_yields_chunks_that_add_up_to_the_unstreamed_text(server: WorkerServer) -> None:
    plain = server.one({"messages": CHAT, "max_new_tokens": 8})
    chunks = server.runsync({"messages": CHAT, "max_new_tokens": 8, "stream": True})
    assert len(chunks) > 2
    assert "".join(c["text"] for c in chunks) == plain["generated_text"]
    assert chunks[-1]["finish_reason"] == "length" and chunks[-1]["usage"]["completion_tokens"] == 8


def test_stop_sequence_cuts_the_text(server: WorkerServer) -> None:
    words = server.one({"prompt": "hello", "max_new_tokens": 8})["generated_text"].split()
    stop = words[3]
    index = words.index(stop)
    out = server.one({"prompt": "hello", "max_new_tokens": 8, "stop": [" " + stop]})
    assert out["generated_text"] == " ".join(words[:index])
    assert out["finish_reason"] == "stop"
    streamed = server.runsync({"prompt": "hello", "max_new_tokens": 8, "stop": " " + stop, "stream": True})
    assert "".join(c["text"] for c in streamed) == out["generated_text"]


def test_seeded_sampling_is_reproducible(server: WorkerServer) -> None:
    job = {"prompt": "the weather", "max_new_tokens": 8, "temperature": 1.5, "top_k": 50, "seed": 7}
    assert server.one(job)["generated_text"] == server.one(job)["generated_text"]


def test_openai_chat_completion(server: WorkerServer) -> None:
    plain = server.one({"messages": CHAT, "max_new_tokens": 8})
    out = server.one(
        {"openai_route": "/v1/chat/completions", "openai_input": {"model": TINY_LM, "messages": CHAT, "max_tokens": 8}}
    )
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    (choice,) = out["choices"]
    assert choice["message"] == {"role": "assistant", "content": plain["generated_text"]}
    assert choice["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 8
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + 8


def test_openai_chat_stream_returns_more_than_one_chunk(server: WorkerServer) -> None:
    plain = server.one({"messages": CHAT, "max_new_tokens": 8})
    openai_input: dict[str, Any] = {
        "model": TINY_LM,
        "messages": CHAT,
        "max_completion_tokens": 8,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    outputs = server.runsync({"openai_route": "/v1/chat/completions", "openai_input": openai_input})
    assert len(outputs) > 2 and all(isinstance(o, str) and o.startswith("data: ") for o in outputs)
    chunks, done = sse_chunks(outputs)
    assert done
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == plain["generated_text"]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 8


@pytest.mark.parametrize(
    ("job_input", "expected"),
    [
        ({"prompt": "hi", "max_new_tokens": 33}, "VOLCACHE_MAX_NEW_TOKENS"),
        ({"prompt": "hi", "messages": CHAT}, "not both or none"),
        ({"prompt": "hi", "temperature": -1}, "`temperature` should be greater than or equal to 0"),
        ({"prompt": "hi", "parameters": {"max_new_tokens": 2}, "max_new_tokens": 3}, "given both"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "`messages.0.role`"),
        ({"openai_route": "/v1/embeddings", "openai_input": {"input": "x"}}, "embeddings workers"),
        ({"openai_route": "/v1/chat/completions", "openai_input": {"messages": CHAT, "n": 2}}, "`n`"),
    ],
)
def test_a_bad_job_gets_one_error_sentence_and_the_next_job_succeeds(
    server: WorkerServer, job_input: dict[str, Any], expected: str
) -> None:
    (error,) = server.runsync(job_input)
    assert set(error) == {"error"} and expected in error["error"], error
    assert server.one({"prompt": "hi", "max_new_tokens": 2})["usage"]["completion_tokens"] == 2


def test_test_input_streams_a_list_of_chunks(sandbox: Sandbox, hub: HubEmulator, server: WorkerServer) -> None:
    before = hub.stats.requests
    run = run_test_input(
        sandbox.env(HF_ENDPOINT=hub.url, MODEL_NAME=TINY_LM), {"messages": CHAT, "max_new_tokens": 5, "stream": True}
    )
    assert run.proc.returncode == 0, run.output[-3000:]
    assert hub.stats.requests == before  # warm: the server downloaded it
    chunks = run.result
    assert isinstance(chunks, list) and len(chunks) > 1
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_no_weight_byte_was_written_outside_the_volume(server: WorkerServer, sandbox: Sandbox) -> None:
    assert weight_files(*sandbox.container_disk()) == []
