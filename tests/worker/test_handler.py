"""The handler's error boundary and shapes, in process, with fake models (no torch needed)."""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import make_settings
from volcache.worker import EmbeddingsTask, JobError, Limits, PipelineTask, Worker
from volcache.worker._openai import ChatCompletion, embeddings_response, sse
from volcache.worker.tasks.base import jsonable
from volcache.worker.tasks.embeddings import Embedded
from volcache.worker.tasks.generation import Generated, StopScanner
from volcache.worker.tasks.pipeline import token_limit


class FakeSentenceTransformer:
    """Enough of SentenceTransformer for EmbeddingsTask: 4 dimensions, 'boom' raises."""

    max_seq_length = 8
    tokenizer = None

    def get_embedding_dimension(self) -> int:
        return 4

    def encode(self, texts: Sequence[str], **kwargs: Any) -> Any:
        if "boom hf_secret_token" in texts:
            raise RuntimeError("kaput with hf_secret_token inside")
        vectors = np.array([[3.0, 4.0, 0.0, 0.0]] * len(texts))
        return vectors / 5 if kwargs.get("normalize_embeddings") else vectors


def make_worker(tmp_path: Path, **env: object) -> Worker:
    settings = make_settings(tmp_path / "volume", HF_TOKEN="hf_secret_token", **env)
    return Worker(EmbeddingsTask(FakeSentenceTransformer(), Limits.from_settings(settings)), settings, "fake/model")


def collect(worker: Worker, job_input: Any, job_id: str = "job-1") -> list[Any]:
    async def run() -> list[Any]:
        return [item async for item in worker.stream_handler({"id": job_id, "input": job_input})]

    return asyncio.run(run())


def test_plain_and_stream_handlers_return_the_same_output(tmp_path: Path) -> None:
    worker = make_worker(tmp_path)
    (streamed,) = collect(worker, {"input": ["a", "b"], "normalize": False})
    plain = asyncio.run(worker.handler({"id": "j", "input": {"input": ["a", "b"], "normalize": False}}))
    assert plain == streamed
    assert plain["embeddings"] == [[3.0, 4.0, 0.0, 0.0]] * 2 and plain["dimensions"] == 4
    assert plain["model"] == "fake/model"


def test_dimensions_truncate_and_renormalise(tmp_path: Path) -> None:
    (out,) = collect(make_worker(tmp_path), {"input": "a", "dimensions": 2})
    assert out["embeddings"] == [[pytest.approx(0.6), pytest.approx(0.8)]]


def test_a_job_error_becomes_an_error_payload(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    worker = make_worker(tmp_path)
    with caplog.at_level(logging.INFO, logger="volcache.worker"):
        (out,) = collect(worker, {"input": []}, job_id="bad-1")
    assert out == {"error": "Invalid embeddings job: `input` is empty, but a job needs at least one text."}
    assert "job bad-1 refused" in caplog.text


def test_an_unexpected_exception_is_logged_with_the_job_id_and_redacted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = make_worker(tmp_path)
    with caplog.at_level(logging.ERROR, logger="volcache.worker"):
        (out,) = collect(worker, {"input": ["boom hf_secret_token"]}, job_id="job-42")
    message = out["error"]
    assert message.startswith("The worker failed on job job-42 (RuntimeError: kaput with hf_*** inside)")
    assert "hf_secret_token" not in message
    record = next(r for r in caplog.records if "job job-42 failed" in r.getMessage())
    assert record.exc_info is not None  # the traceback is in the log, not in the answer
    assert collect(worker, {"input": "fine"})[0]["dimensions"] == 4  # still serving


@pytest.mark.parametrize("job_input", [None, "text", ["a"]])
def test_a_job_without_an_input_object(tmp_path: Path, job_input: Any) -> None:
    (out,) = collect(make_worker(tmp_path), job_input)
    assert out["error"].startswith("The job has no input object")


def test_plain_handler_returns_the_error_alone(tmp_path: Path) -> None:
    out = asyncio.run(make_worker(tmp_path).handler({"id": "j", "input": {"nope": 1}}))
    assert set(out) == {"error"}


def test_openai_routes_on_an_embeddings_worker(tmp_path: Path) -> None:
    worker = make_worker(tmp_path)
    (models,) = collect(worker, {"openai_route": "/v1/models"})
    assert models["data"][0]["id"] == "fake/model" and models["data"][0]["object"] == "model"
    (emb,) = collect(worker, {"openai_route": "/v1/embeddings", "openai_input": {"input": ["a", "b"]}})
    assert [d["index"] for d in emb["data"]] == [0, 1]
    assert emb["data"][0]["embedding"] == [pytest.approx(0.6), pytest.approx(0.8), 0.0, 0.0]
    (wrong,) = collect(worker, {"openai_route": "/v1/chat/completions", "openai_input": {"messages": []}})
    assert "MODEL_TASK=text-generation" in wrong["error"]
    (unknown,) = collect(worker, {"openai_route": "/v1/completions", "openai_input": {"prompt": "x"}})
    assert "`/v1/completions` is not served" in unknown["error"]


def test_concurrency_comes_from_the_settings(tmp_path: Path) -> None:
    assert make_worker(tmp_path).concurrency_modifier(1) == 1
    assert make_worker(tmp_path, VOLCACHE_CONCURRENCY=4).concurrency_modifier(1) == 4


def test_pipeline_task_turns_refusals_into_job_errors_and_outputs_into_json(tmp_path: Path) -> None:
    def pipe(inputs: Any, **parameters: Any) -> Any:
        if parameters:
            raise ValueError("unknown\n  option")
        return [{"label": "POSITIVE", "score": np.float32(0.5), "ids": np.arange(2)}]

    settings = make_settings(tmp_path / "volume")
    worker = Worker(PipelineTask(pipe, "text-classification"), settings)
    (out,) = collect(worker, {"inputs": "x"})
    assert out == [{"label": "POSITIVE", "score": 0.5, "ids": [0, 1]}]
    (bad,) = collect(worker, {"inputs": "x", "parameters": {"top_k": 1}})
    assert bad == {"error": "The text-classification pipeline refused this job: unknown option."}
    (unknown,) = collect(worker, {"inputs": "x", "parameters": {"k": 1}})
    assert unknown == {
        "error": "Invalid text-classification job: `k` is not a parameter of this pipeline "
        "(allowed: `top_k`, `function_to_apply`, `truncation`)."
    }
    (out_of_range,) = collect(worker, {"inputs": "x", "parameters": {"top_k": 0}})
    assert out_of_range == {
        "error": "Invalid text-classification job: `parameters.top_k` must be a whole number from 1 to 1000."
    }


class _FakeTokenizer:
    model_max_length = int(1e30)  # unset, as tiny test tokenizers leave it

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": [0, *range(len(text.split())), 2]}


def test_pipeline_inputs_are_bounded_by_the_models_positions(tmp_path: Path) -> None:
    """A 200-word input to a RoBERTa-style classifier (514 positions, padding index 1) is refused, not crashed on."""
    calls: list[Any] = []

    def pipe(inputs: Any, **parameters: Any) -> Any:
        calls.append(inputs)
        return [{"label": "POSITIVE", "score": 0.5}]

    config = types.SimpleNamespace(max_position_embeddings=104, pad_token_id=1, model_type="roberta")
    pipe.tokenizer = _FakeTokenizer()  # type: ignore[attr-defined]
    pipe.model = types.SimpleNamespace(config=config)  # type: ignore[attr-defined]
    assert token_limit(pipe) == 102
    worker = Worker(PipelineTask(pipe, "text-classification"), make_settings(tmp_path / "volume"))
    (long,) = collect(worker, {"inputs": ["short", " ".join(["word"] * 200)]})
    assert long == {
        "error": "Invalid text-classification job: `inputs[1]` has 202 tokens, above this model's limit of 102; "
        "shorten the text or pass `parameters.truncation: true`."
    }
    assert calls == []  # refused before the model ran
    (fits,) = collect(worker, {"inputs": " ".join(["word"] * 100)})
    assert fits == [{"label": "POSITIVE", "score": 0.5}]


def test_stop_scanner_holds_back_a_possible_stop_sequence() -> None:
    scanner = StopScanner(["STOP"])
    assert scanner.feed("hello S") == "hello "
    assert scanner.feed("T") == ""
    assert scanner.feed("x") == "STx"
    assert scanner.feed(" ST") == " "
    assert scanner.feed("OP and more") == ""
    assert scanner.stopped and scanner.text == "hello STx "
    assert scanner.flush() == ""
    free = StopScanner([])
    assert free.feed("abc") == "abc" and free.flush() == ""


def test_openai_shapes() -> None:
    embedded = Embedded([[1.0, -2.5]], 2, 3)
    b64 = embeddings_response("m", embedded, "base64")["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(b64)) == (1.0, -2.5)
    completion = ChatCompletion("m")
    done = completion.response(Generated("hi", 3, 1, "stop"))
    assert done["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
    assert done["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    usage_only = completion.chunk({}, usage=done["usage"])
    assert usage_only["choices"] == [] and usage_only["id"] == done["id"]
    assert sse({"a": 1}) == 'data: {"a":1}\n\n'


def test_jsonable_and_job_error_is_a_value_error() -> None:
    assert jsonable({"a": (np.int64(1), np.array([[1.5]]))}) == {"a": [1, [[1.5]]]}
    assert issubclass(JobError, ValueError)
