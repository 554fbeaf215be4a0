"""Loading a task's model from its snapshot folder: the device, the phases timed, the prefetch awaited.

This is the one place weights are read. `prepare()` chooses the load strategy once and starts the
prefetch once; both travel in the `LoadContext` to `load_task`, which imports the task's library,
builds the model (`Task.load`) and then waits for the prefetch, so the start-up line reports the
strategy that was really used.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .._settings import Settings
from ..store.loading import Prefetch, Strategy, choose_strategy, from_pretrained_kwargs, start_prefetch
from ._schemas import Limits
from .tasks import Task, task_class
from .tasks.base import LoadContext, heavy
from .tasks.vllm import choose_engine

log = logging.getLogger("volcache.worker")


def resolve_device(requested: str) -> str:
    """`VOLCACHE_DEVICE`: `auto` is `cuda` when a GPU is visible, else `cpu`."""
    if requested != "auto":
        return requested
    return "cuda" if heavy("torch").cuda.is_available() else "cpu"


def load_task(ctx: LoadContext) -> Task[object]:
    """Load `ctx.task` from `ctx.path` with local files only, timing import, construct, device_sync
    (on a GPU) and prefetch_wait.

    `ctx.path` is the snapshot folder on the volume (never a repo id), so no library asks the Hub.
    `ctx.strategy` (`VOLCACHE_LOAD`, see `volcache.store.loading`) says how the weight files are read in
    place: `mmap` (the libraries' default), `read` (whole files into memory) or `prefetch`
    (parallel reads into the page cache, started by `prepare()` when the store resolved the
    snapshot). The prefetch runs on while the libraries are imported and the model is built (the
    loader's reads then find its pages in the page cache or wait on those in flight, so no byte
    is fetched twice), and is awaited at the end, before the warm-up touches the weights.
    Nothing is copied. Inside `load_phases()` the time of each step is recorded.
    """
    cls = task_class(ctx.task, choose_engine(ctx.settings, ctx.task, ctx.device))
    with _phase("import"):
        if {"transformers", "sentence_transformers", "diffusers"} & set(cls.libraries):
            _quiet_progress_bars()
        for module in cls.libraries:
            heavy(module)
    with _phase("construct"):
        task = cls.load(ctx)
    if ctx.device.startswith("cuda"):
        with _phase("device_sync"):  # the host-to-device copies still in flight when the build returned
            heavy("torch").cuda.synchronize()
    with _phase("prefetch_wait"):
        if ctx.prefetch is not None:
            ctx.prefetch.wait()
            log.info(
                "volcache: prefetched %d bytes in %.2fs (%d threads)",
                ctx.prefetch.bytes_read,
                ctx.prefetch.seconds,
                ctx.prefetch.threads,
            )
    return task


def load_context(
    path: Path,
    task: str,
    settings: Settings,
    *,
    model: str | None = None,
    strategy: Strategy | None = None,
    prefetch: Prefetch | None = None,
) -> LoadContext:
    """The `LoadContext` for `path`: the strategy chosen here unless given, the device resolved once."""
    strategy = strategy or choose_strategy(settings.load, path)
    with _phase("import"):
        device = resolve_device(settings.device)
        read_kwargs = from_pretrained_kwargs(strategy)
        if settings.variant:  # the store downloaded that variant's files only (MODEL_VARIANT)
            read_kwargs = {**read_kwargs, "variant": settings.variant}
    return LoadContext(
        path=path,
        model=model or settings.served_model_name or settings.model,
        task=task,
        settings=settings,
        device=device,
        limits=Limits.from_settings(settings),
        strategy=strategy,
        read_kwargs=read_kwargs,
        prefetch=prefetch,
    )


def load_model(path: Path, task: str, settings: Settings) -> Task[object]:
    """Load the snapshot at `path` for `task`, prefetching where the strategy says (tools and benchmarks;
    the worker builds its `LoadContext` itself, with the prefetch it started when the store resolved).
    """
    strategy = choose_strategy(settings.load, path)
    return load_task(load_context(path, task, settings, strategy=strategy, prefetch=start_prefetch(path, strategy)))


_load_phases: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
    "volcache_load_phases", default=None
)


@contextlib.contextmanager
def load_phases() -> Iterator[dict[str, float]]:
    """Collect, in the dict it yields, the seconds each step of `load_task` called inside takes."""
    phases: dict[str, float] = {}
    token = _load_phases.set(phases)
    try:
        yield phases
    finally:
        _load_phases.reset(token)


@contextlib.contextmanager
def _phase(name: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        phases = _load_phases.get()
        if phases is not None:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - began


def _quiet_progress_bars() -> None:
    """Progress bars are for terminals; in a worker's log they are noise (and \\r-garbled)."""
    if sys.stderr.isatty():
        return
    heavy("transformers.utils.logging").disable_progress_bar()
