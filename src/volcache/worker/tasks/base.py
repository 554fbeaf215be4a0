"""The one interface every task implements, and what the worker hands a task to load and to run a job.

A task turns a job into an answer for one kind of model. Its lifecycle, as LitServe states it:

1. `load(ctx)` (class method, once): import the model's library and build the model from the
   snapshot folder in `ctx.path`, reading the weights as `ctx.strategy` says;
2. `warmup()` (once): one small inference, so the first job does not pay for lazy set-up;
3. per job: `decode(payload)` validates the job's input into a typed request (`JobError` with one
   sentence when it cannot run), then `run(request, job)` yields the answer: one JSON-able item
   for a plain job, one per chunk where `streams(request)` is true.

`run` is blocking; the worker calls it in a thread, off RunPod's event loop. OpenAI's routes are
served by the adapter in `volcache.worker._openai`, which turns an OpenAI body into the task's
native payload and the native answer back into OpenAI's shape; a task that answers a route itself
(an engine with its own OpenAI layer) returns an `OpenAICall` from `openai()`.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import dataclasses
import importlib
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._schemas import JobError, Limits

if TYPE_CHECKING:
    from ..._settings import Settings
    from ...store.loading import Prefetch, Strategy

RequestT = TypeVar("RequestT")
TaskT = TypeVar("TaskT", bound="Task[Any]")


@dataclasses.dataclass(frozen=True)
class LoadContext:
    """Everything a task needs to load its model; built once by the worker's start-up."""

    path: Path  # the snapshot folder on the volume: load from here, never from a repo id
    model: str  # the model's name as served
    task: str  # the task's name (`MODEL_TASK`, or detected from the snapshot's files)
    settings: Settings  # every setting, read once
    device: str  # resolved once: "cuda", "cpu", ...
    limits: Limits
    strategy: Strategy  # how the weights are read, chosen once: mmap | read | prefetch
    read_kwargs: Mapping[str, object]  # `from_pretrained` keyword arguments for that strategy
    prefetch: Prefetch | None = None  # the background read of the weights; the worker awaits it after load


@dataclasses.dataclass
class JobContext:
    """One job as a task sees it: its id, the served model name, cancellation and progress."""

    id: str
    model: str
    cancelled: threading.Event = dataclasses.field(default_factory=threading.Event)
    on_progress: Callable[[str | dict[str, Any]], None] | None = None

    def progress(self, update: str | dict[str, Any]) -> None:
        """Report progress of a long job (RunPod's `progress_update`, shown by `/status`)."""
        if self.on_progress is not None:
            self.on_progress(update)


@dataclasses.dataclass(frozen=True)
class OpenAICall:
    """An OpenAI route answered by the task itself: whether it streams, and its blocking output items."""

    stream: bool
    outputs: Callable[[JobContext], Iterator[Any]]


class Task(abc.ABC, Generic[RequestT]):
    """A loaded model behind one task; see the module docstring for the lifecycle."""

    name: str  # the task's name as `MODEL_TASK` spells it, e.g. "embeddings"
    limits: Limits
    # The heavy modules `load` imports; the worker imports them first, to time the import apart
    # from the build (the start-up line's `load_s`).
    libraries: tuple[str, ...] = ()
    # Jobs this task takes at once, where it knows better than `VOLCACHE_CONCURRENCY` (an engine
    # with continuous batching); None leaves it to the setting.
    concurrency: int | None = None

    @classmethod
    @abc.abstractmethod
    def load(cls: type[TaskT], ctx: LoadContext) -> TaskT:
        """Build the model from `ctx.path` (heavy imports happen here, after the caches are pinned)."""

    @abc.abstractmethod
    def decode(self, payload: dict[str, Any]) -> RequestT:
        """The job's native input as a typed request; `JobError` when it cannot be run."""

    def streams(self, request: RequestT) -> bool:
        """True when `run` yields chunks to stream rather than one answer."""
        return False

    @abc.abstractmethod
    def run(self, request: RequestT, job: JobContext) -> Iterator[Any]:
        """Yield the answer (blocking): JSON-able native output items; `JobError` for a client's mistake."""

    @abc.abstractmethod
    def warmup(self) -> None:
        """One small inference before the first job."""

    def openai(self, route: str, body: dict[str, Any]) -> OpenAICall | None:
        """An OpenAI route this task answers itself; None lets the generic adapter serve it."""
        return None


def heavy(module: str) -> Any:
    """Import a heavy library (torch, transformers...) where it is used, after the caches are pinned.

    Inside `timed_imports()`, the first import of each module is timed (the start-up line's
    `imports_s`). Typed as `Any`: these libraries' partial annotations say little about the calls
    made here.
    """
    imports = _imports.get()
    if imports is None or module in sys.modules:
        return importlib.import_module(module)
    began = time.perf_counter()
    loaded = importlib.import_module(module)
    imports[module] = imports.get(module, 0.0) + time.perf_counter() - began
    return loaded


_imports: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("volcache_imports", default=None)


@contextlib.contextmanager
def timed_imports() -> Iterator[dict[str, float]]:
    """Collect, in the dict it yields, the seconds each first `heavy()` import takes, in import order.

    Each module's time is its own: what an earlier one imported already is not counted again.
    """
    imports: dict[str, float] = {}
    token = _imports.set(imports)
    try:
        yield imports
    finally:
        _imports.reset(token)


def jsonable(value: Any) -> Any:
    """`value` with numpy and torch scalars and arrays turned into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    tolist = getattr(value, "tolist", None)
    if callable(tolist):  # numpy arrays and scalars, torch tensors
        return jsonable(tolist())
    return str(value)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, without a trailing period, at most 300 characters."""
    text = re.sub(r"\s+", " ", str(exc)).strip().rstrip(".")
    return text[:300] or type(exc).__name__


__all__ = [
    "JobContext",
    "JobError",
    "LoadContext",
    "OpenAICall",
    "Task",
    "heavy",
    "jsonable",
    "one_line",
    "timed_imports",
]
