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
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from .._settings import Settings
from . import _openai
from ._schemas import JobError, Limits, OpenAIJob, quote_name, validate
from .tasks.base import JobContext, Task, one_line

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

    def __init__(self, task: Task[Any], settings: Settings, model_name: str | None = None) -> None:
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
        """RunPod asks how many jobs this worker takes at once: the task's own number, else `VOLCACHE_CONCURRENCY`."""
        return self.task.concurrency or self.settings.concurrency

    def _progress_reporter(self, job: Any) -> Callable[[str | dict[str, Any]], None] | None:
        """RunPod's `progress_update` for this job when it came from RunPod's queue (the SDK posts the
        update to the queue's webhook; in the local modes there is none to post to)."""
        update = getattr(sys.modules.get("runpod.serverless"), "progress_update", None)
        if (
            not self.settings.runpod_job_queue
            or not isinstance(job, Mapping)
            or "id" not in job
            or not callable(update)
        ):
            return None

        def report(progress: str | dict[str, Any]) -> None:
            try:
                update(dict(job), progress)
            except Exception:  # progress is a courtesy: never fail the job for it
                log.debug("volcache: progress update failed", exc_info=True)

        return report

    # -- the error boundary --------------------------------------------------------------------
    async def _guarded(self, job: Mapping[str, Any], on_decoded: Callable[[Call], None] | None) -> AsyncIterator[Any]:
        job_id = str(job.get("id", "?")) if isinstance(job, Mapping) else "?"
        started = time.perf_counter()
        try:
            context = JobContext(job_id, self.model_name, on_progress=self._progress_reporter(job))
            call = self.decode(job.get("input") if isinstance(job, Mapping) else None, context)
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
    def decode(self, payload: Any, job: JobContext | None = None) -> Call:
        """Validate a job's input into a `Call`; `JobError` when it cannot be run."""
        job = job or JobContext("?", self.model_name)
        if not isinstance(payload, dict):
            raise JobError(
                'The job has no input object; send {"input": {...}}, e.g. {"input": {"input": ["some text"]}} '
                'or {"input": {"openai_route": "/v1/models"}}.'
            )
        if "openai_route" in payload or "openai_input" in payload:
            return self._decode_openai(validate(OpenAIJob, payload, self.limits, what="OpenAI job"), job)
        task = self.task
        request = task.decode(payload)
        return Call(task.streams(request), lambda: _iterate(lambda: task.run(request, job), job))

    def _decode_openai(self, envelope: OpenAIJob, job: JobContext) -> Call:
        route, body, task = envelope.openai_route, envelope.openai_input, self.task
        own = task.openai(route, body)  # first: an engine with its own OpenAI server answers /v1/models too
        if own is not None:
            return Call(own.stream, lambda: _iterate(lambda: own.outputs(job), job))
        if route == _openai.MODELS_ROUTE:
            return Call(False, lambda: _one(_openai.models_response(self.model_name, self.created)))
        adapter = _openai.ROUTES.get(route)
        if adapter is None:
            served = ", ".join([_openai.MODELS_ROUTE, *_openai.ROUTES])
            raise JobError(f"Invalid OpenAI job: `openai_route` {quote_name(route)} is not served (use {served}).")
        if adapter.task != task.name:
            raise JobError(self._wrong_task(route, adapter.task))
        request, state = adapter.decode(body, self.limits)
        return Call(
            adapter.streams(state),
            lambda: _iterate(lambda: adapter.encode(task.run(request, job), state, self.model_name), job),
        )

    def _wrong_task(self, route: str, needed: str) -> str:
        return (
            f"{route} is served by {needed} workers, but this one serves {self.task.name} ({self.model_name}); "
            f"send it to a worker started with MODEL_TASK={needed}."
        )


async def _iterate(start: Callable[[], Iterator[Any]], job: JobContext) -> AsyncIterator[Any]:
    """The items of a task's blocking iterator, each fetched in a thread, off the event loop.

    When the job ends early (the client went away, the stream was closed), `job.cancelled` is
    set first so a generation stops at its next token, then the iterator is closed.
    """
    items = await asyncio.to_thread(start)
    try:
        while (item := await asyncio.to_thread(next, items, _END)) is not _END:
            yield item
    finally:
        job.cancelled.set()
        await asyncio.to_thread(_close, items)


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
