"""The RunPod handler: one error boundary around decode → predict → encode for every job.

A job's input takes one of four forms, told apart by its keys:

- `{"openai_route": "/v1/...", "openai_input": {...}}`: OpenAI's API as RunPod's workers accept it;
- embeddings: `{"input": "text" | [...], "normalize": true, "dimensions": null}`;
- text generation: `{"prompt": ...}` or `{"messages": [...]}`, sampling parameters, `"stream": true`;
- any other pipeline: `{"inputs": ..., "parameters": {...}}` (the Hugging Face Inference API shape).

Outputs are yielded: one item for a plain job, one per chunk for a stream. RunPod's SDK sends
each yield to `/stream` and, with `return_aggregate_stream`, the list of them to `/runsync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from .._settings import Settings
from . import _openai
from ._schemas import (
    EmbeddingsRequest,
    GenerationRequest,
    JobError,
    Limits,
    OpenAIChatRequest,
    OpenAIEmbeddingsRequest,
    OpenAIJob,
    PipelineRequest,
    validate,
)
from ._tasks import EmbeddingsTask, Generated, GenerationTask, PipelineTask, Task, one_line

log = logging.getLogger("volcache.worker")
_END = object()


@dataclasses.dataclass(frozen=True)
class Call:
    """A decoded job: whether it streams, and the coroutine generator that predicts and encodes it."""

    stream: bool
    outputs: Callable[[], AsyncIterator[Any]]


class Worker:
    """One model, served to RunPod jobs.

    Lifecycle, as in LitServe:

    1. **setup** (once, before the first job): `volcache.worker.prepare()` reads the settings,
       pins the caches, removes stale caches, finds or downloads the model on the volume, loads
       it from the snapshot folder and runs a warm-up inference; then it builds this object.
    2. **decode** (`decode`): the job's input is validated into a typed request; a bad input
       raises `JobError` with one sentence, before any model code runs.
    3. **predict**: the model runs in a worker thread, off the event loop, so several jobs can
       be in flight when `VOLCACHE_CONCURRENCY` > 1; a stream yields as tokens arrive.
    4. **encode**: the result becomes volcache's native output or OpenAI's shape.

    `stream_handler` (an async generator, for RunPod's queue and `--rp_serve_api`) and `handler`
    (a coroutine returning one output, for `--test_input` and the realtime API) wrap the steps in
    one error boundary: a `JobError` becomes `{"error": "<sentence>"}`; anything else is logged
    with the job id and traceback and becomes `{"error": ...}` too. The worker keeps serving.
    """

    def __init__(self, task: Task, settings: Settings, model_name: str | None = None) -> None:
        self.task = task
        self.settings = settings
        self.limits = Limits.from_settings(settings)
        self.model_name = model_name or settings.served_model_name or settings.model
        self.created = int(time.time())

    # -- RunPod entry points ----------------------------------------------------------------
    async def stream_handler(self, job: Mapping[str, Any]) -> AsyncIterator[Any]:
        """RunPod generator handler: yields each output; errors as a final `{"error": ...}`."""
        async for item in self._guarded(job, None):
            yield item

    async def handler(self, job: Mapping[str, Any]) -> Any:
        """RunPod plain handler: the one output, the list of chunks of a stream, or `{"error": ...}`."""
        streamed = False

        def note(call: Call) -> None:
            nonlocal streamed
            streamed = call.stream

        outputs = [item async for item in self._guarded(job, note)]
        if outputs and _is_error(outputs[-1]):
            return outputs[-1]
        if streamed:
            return outputs
        return outputs[0] if outputs else None

    def concurrency_modifier(self, current: int) -> int:
        """RunPod asks how many jobs this worker takes at once: `VOLCACHE_CONCURRENCY`."""
        return self.settings.concurrency

    # -- the error boundary --------------------------------------------------------------------
    async def _guarded(self, job: Mapping[str, Any], on_decoded: Callable[[Call], None] | None) -> AsyncIterator[Any]:
        job_id = str(job.get("id", "?")) if isinstance(job, Mapping) else "?"
        started = time.perf_counter()
        try:
            call = self.decode(job.get("input") if isinstance(job, Mapping) else None)
            if on_decoded is not None:
                on_decoded(call)
            async for item in call.outputs():
                yield item
        except JobError as exc:
            log.info("volcache: job %s refused: %s", job_id, exc)
            yield {"error": str(exc)}
        except Exception as exc:
            log.exception("volcache: job %s failed", job_id)
            reason = self.settings.redact(one_line(exc))
            yield {
                "error": f"The worker failed on job {job_id} ({type(exc).__name__}: {reason}); "
                "the worker log has the traceback."
            }
        else:
            log.info("volcache: job %s done in %.3fs", job_id, time.perf_counter() - started)

    # -- decode ----------------------------------------------------------------------------------
    def decode(self, payload: Any) -> Call:
        """Validate a job's input into a `Call`; `JobError` when it cannot be run."""
        if not isinstance(payload, dict):
            raise JobError(
                'The job has no input object; send {"input": {...}}, e.g. {"input": {"input": ["some text"]}} '
                'or {"input": {"openai_route": "/v1/models"}}.'
            )
        if "openai_route" in payload or "openai_input" in payload:
            return self._decode_openai(validate(OpenAIJob, payload, self.limits, what="OpenAI job"))
        task = self.task
        if isinstance(task, EmbeddingsTask):
            emb = validate(EmbeddingsRequest, payload, self.limits, what="embeddings job")
            return Call(False, lambda: self._embed(emb))
        if isinstance(task, GenerationTask):
            gen = validate(GenerationRequest, payload, self.limits, what="text-generation job")
            return Call(gen.stream, lambda: self._generate(gen))
        req = validate(PipelineRequest, payload, self.limits, what=f"{task.name} job")
        return Call(False, lambda: self._pipeline(task, req))

    def _decode_openai(self, job: OpenAIJob) -> Call:
        route, task = job.openai_route, self.task
        if route == "/v1/models":
            return Call(False, lambda: _one(_openai.models_response(self.model_name, self.created)))
        if route == "/v1/embeddings":
            if not isinstance(task, EmbeddingsTask):
                raise JobError(self._wrong_task(route, "embeddings"))
            emb = validate(OpenAIEmbeddingsRequest, job.openai_input, self.limits, what="/v1/embeddings request")
            return Call(False, lambda: self._openai_embeddings(task, emb))
        if not isinstance(task, GenerationTask):
            raise JobError(self._wrong_task(route, "text-generation"))
        chat = validate(OpenAIChatRequest, job.openai_input, self.limits, what="/v1/chat/completions request")
        gen = validate(GenerationRequest, chat.generation(), self.limits, what="/v1/chat/completions request")
        return Call(chat.stream, lambda: self._openai_chat(task, chat, gen))

    def _wrong_task(self, route: str, needed: str) -> str:
        return (
            f"{route} is served by {needed} workers, but this one serves {self.task.name} ({self.model_name}); "
            f"send it to a worker started with MODEL_TASK={needed}."
        )

    # -- predict and encode ------------------------------------------------------------------
    async def _embed(self, req: EmbeddingsRequest) -> AsyncIterator[Any]:
        task = self.task
        assert isinstance(task, EmbeddingsTask)
        embedded = await asyncio.to_thread(task.embed, req.input, normalize=req.normalize, dimensions=req.dimensions)
        yield {
            "embeddings": embedded.vectors,
            "dimensions": embedded.dimensions,
            "model": self.model_name,
            "usage": {"prompt_tokens": embedded.prompt_tokens},
        }

    async def _openai_embeddings(self, task: EmbeddingsTask, req: OpenAIEmbeddingsRequest) -> AsyncIterator[Any]:
        embedded = await asyncio.to_thread(task.embed, req.input, normalize=True, dimensions=req.dimensions)
        yield _openai.embeddings_response(self.model_name, embedded, req.encoding_format)

    async def _generate(self, req: GenerationRequest) -> AsyncIterator[Any]:
        task = self.task
        assert isinstance(task, GenerationTask)
        if not req.stream:
            done = await asyncio.to_thread(lambda: task.generate(task.prepare(req)))
            yield {"generated_text": done.text, "finish_reason": done.finish_reason, "usage": done.usage}
            return
        async for piece in self._stream(task, req):
            if isinstance(piece, Generated):
                yield {"text": "", "finish_reason": piece.finish_reason, "usage": piece.usage}
            else:
                yield {"text": piece}

    async def _openai_chat(
        self, task: GenerationTask, chat: OpenAIChatRequest, req: GenerationRequest
    ) -> AsyncIterator[Any]:
        completion = _openai.ChatCompletion(self.model_name)
        if not chat.stream:
            done = await asyncio.to_thread(lambda: task.generate(task.prepare(req)))
            yield completion.response(done)
            return
        yield _openai.sse(completion.chunk({"role": "assistant", "content": ""}))
        async for piece in self._stream(task, req):
            if isinstance(piece, Generated):
                yield _openai.sse(completion.chunk({}, piece.finish_reason))
                if chat.stream_options is not None and chat.stream_options.include_usage:
                    yield _openai.sse(completion.chunk({}, usage=piece.usage))
            else:
                yield _openai.sse(completion.chunk({"content": piece}))
        yield _openai.SSE_DONE

    async def _stream(self, task: GenerationTask, req: GenerationRequest) -> AsyncIterator[str | Generated]:
        """Text deltas, then the `Generated` summary; the blocking iterator runs in a thread."""
        prompt = await asyncio.to_thread(task.prepare, req)
        cancel = threading.Event()
        pieces: Iterator[str | Generated] = task.stream(prompt, cancel)
        try:
            while (piece := await asyncio.to_thread(next, pieces, _END)) is not _END:
                yield piece  # type: ignore[misc]
        finally:
            cancel.set()  # the client went away or the job ended: stop generating at the next token
            await asyncio.to_thread(_close, pieces)

    async def _pipeline(self, task: PipelineTask, req: PipelineRequest) -> AsyncIterator[Any]:
        yield await asyncio.to_thread(task.run, req)


async def _one(item: Any) -> AsyncIterator[Any]:
    yield item


def _close(iterator: Iterator[Any]) -> None:
    """Close a generator; one still running in a cancelled thread finishes on its own (cancel is set)."""
    close = getattr(iterator, "close", None)
    if close is not None:
        with contextlib.suppress(ValueError):  # "generator already executing"
            close()


def _is_error(item: Any) -> bool:
    return isinstance(item, dict) and set(item) == {"error"}
