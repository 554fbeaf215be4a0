"""Worker start-up: settings → pin → stale cleanup → ensure → load → warm-up → RunPod, each phase timed.

The order is the contract (ARCHITECTURE.md): the caches are pinned before any Hugging Face
library is imported (I7), stale build caches are deleted before anything is downloaded (I6), the
model is found or downloaded once on the volume (I2–I4), and it is loaded from its snapshot folder
with the Hub switched off, so a warm start makes no network request (I5). One log line,
`volcache: started {json}`, reports the timings and the disk facts: `timings_s` holds the phases
(pin, cleanup, ensure, load, warmup, runpod_import where the worker imports RunPod's SDK, total
from `prepare()`), `load_s` splits the load (import: the task's libraries; construct: building the
model, its weights read and placed on the device; device_sync on a GPU: the copies still in
flight; prefetch_wait), `imports_s` times each heavy library's first import (torch, tokenizers,
transformers, ... each without what an earlier one imported, so they add up), `prefetch` says what
the background read did (bytes, seconds, threads), and `since_process_start_s` adds the
interpreter's own start-up, as a user waits for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._errors import ConfigError, VolcacheError, one_line
from .._logging import errors_as_one_line, setup_logging
from .._settings import Settings
from ..store import (
    Held,
    ModelStore,
    Prefetch,
    Resolution,
    choose_strategy,
    free_bytes,
    is_mounted,
    pin,
    protected_locations,
    remove_stale_caches,
    require_mounted,
    snapshot_bytes,
    start_prefetch,
    tree_bytes,
    weight_bytes,
)
from ._handler import Worker
from ._load import load_context, load_phases, load_task, selection_of
from ._sdk import SdkImport
from .tasks import detect_task, normalize_task
from .tasks.base import timed_imports

log = logging.getLogger("volcache.worker")

STARTED_PREFIX = "volcache: started "
RESULT_PREFIX = "volcache: result "
PHASES = ("pin", "cleanup", "ensure", "load", "warmup", "runpod_import")


@dataclasses.dataclass(frozen=True)
class DiskFacts:
    """Where the bytes are once the model is loaded."""

    volume_bytes: int  # every file in the hub cache on the volume
    model_bytes: int  # this model's snapshot
    container_disk_weight_bytes: int  # weights in the stale-cache paths and the ephemeral folder: 0 is right
    free_bytes: int  # free space on the volume


@dataclasses.dataclass(frozen=True)
class StartupReport:
    """What start-up did, as the one structured log line reports it."""

    model: str
    revision: str
    commit: str | None
    task: str
    source: str
    path: Path
    device: str
    load_strategy: str
    downloaded_bytes: int
    timings: Mapping[str, float]
    disk: DiskFacts
    stale_bytes_freed: int = 0
    load_split: Mapping[str, float] = dataclasses.field(default_factory=dict)  # import, construct, prefetch_wait
    imports: Mapping[str, float] = dataclasses.field(default_factory=dict)  # library -> seconds of its first import
    prefetch: Mapping[str, object] | None = None  # bytes, seconds, threads of the background read
    since_process_start: float | None = None  # seconds from the process's start to the end of warm-up
    volume_mounted: bool = True  # False: the volume folder is on the container's disk (one copy per worker)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "revision": self.revision,
            "commit": self.commit,
            "task": self.task,
            "source": self.source,
            "path": str(self.path),
            "device": self.device,
            "load": self.load_strategy,
            "downloaded_bytes": self.downloaded_bytes,
            "stale_bytes_freed": self.stale_bytes_freed,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "load_s": {k: round(v, 3) for k, v in self.load_split.items()},
            "imports_s": {k: round(v, 3) for k, v in self.imports.items()},
            "prefetch": dict(self.prefetch) if self.prefetch is not None else None,
            "since_process_start_s": round(self.since_process_start, 3) if self.since_process_start else None,
            "disk": dataclasses.asdict(self.disk),
            "volume_mounted": self.volume_mounted,
        }

    def log_line(self) -> str:
        """`volcache: started {json}`: a fixed prefix, then one JSON object."""
        return STARTED_PREFIX + json.dumps(self.as_dict())

    @classmethod
    def parse(cls, line: str) -> dict[str, Any]:
        """The JSON object of a `log_line` found anywhere in `line` (for tools and tests)."""
        start = line.index(STARTED_PREFIX) + len(STARTED_PREFIX)
        data = json.loads(line[start:])
        assert isinstance(data, dict)
        return data


class _Clock:
    """Times named phases, and the total since it was made."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = time.perf_counter() - began

    def total(self) -> dict[str, float]:
        return {**self.timings, "total": time.perf_counter() - self.start}


def prepare(settings: Settings | None = None, *, sdk: SdkImport | None = None) -> tuple[Worker, StartupReport]:
    """Set the worker up (the lifecycle's *setup*): every phase up to, not including, RunPod's loop.

    With `sdk`, RunPod's SDK is imported last, as the `runpod_import` phase of the startup line.
    """
    clock = _Clock()
    settings = settings or Settings.from_env()
    setup_logging(settings.log_level)
    mounted = _check_volume(settings)
    with clock("pin"):
        pin(settings)
    with clock("cleanup"):
        cleanup = remove_stale_caches(settings.stale_caches, settings.volume, protected_locations(settings))
    with clock("ensure"):
        store = ModelStore(settings)
        resolution = store.resolve()
        resolution = _hold(store, resolution, settings)
    strategy = choose_strategy(settings.load, resolution.path)  # chosen once, used by the loader
    # Reads on while the libraries are imported: only the files the loader opens for this request.
    prefetch = start_prefetch(resolution.path, strategy, selection_of(settings))
    go_offline()
    task_name = normalize_task(settings.task) if settings.task else detect_task(resolution.path, resolution.model)
    with clock("load"), load_phases() as load_split, timed_imports() as imports:
        ctx = load_context(resolution.path, task_name, settings, strategy=strategy, prefetch=prefetch)
        task = load_task(ctx)
    with clock("warmup"):
        task.warmup()
    if sdk is not None:
        with clock("runpod_import"):
            sdk.finish()
    timings, age = clock.total(), process_age()
    report = StartupReport(
        model=resolution.model,
        revision=resolution.revision,
        commit=resolution.commit,
        task=task.name,
        source=resolution.source,
        path=resolution.path,
        device=ctx.device,
        load_strategy=strategy,
        downloaded_bytes=resolution.downloaded_bytes,
        timings=timings,
        disk=disk_facts(settings, resolution, mounted=mounted),
        stale_bytes_freed=cleanup.bytes_freed,
        load_split=load_split,
        imports=imports,
        prefetch=_prefetch_facts(prefetch),
        since_process_start=age,
        volume_mounted=mounted,
    )
    log.info("%s", report.log_line())
    return Worker(task, settings), report


def _check_volume(settings: Settings) -> bool:
    """Say so when the volume is not mounted (a refusal with VOLCACHE_REQUIRE_VOLUME=1); True when it is."""
    if settings.assume_volume:  # a local run or a test: the folder stands for the shared volume
        return True
    if settings.require_volume:
        require_mounted(settings.volume)
    mounted = is_mounted(settings.volume)
    if not mounted:
        log.warning(
            "volcache: %s is not a mount point: no network volume is attached, so the weights go to the "
            "container disk and every worker downloads its own copy. Attach a network volume (or set "
            "VOLCACHE_REQUIRE_VOLUME=1 to refuse to start without one).",
            settings.volume,
        )
    return mounted


# In-use markers live as long as the process: `volcache prune` leaves these snapshots alone.
_HELD: list[Held] = []


def _hold(store: ModelStore, resolution: Resolution, settings: Settings) -> Resolution:
    """Mark the snapshot in use and as used now (`ModelStore.hold`); keep the marker for the process's life."""
    held = store.hold(resolution)
    _HELD.append(held)
    return held.resolution


def start(argv: Sequence[str] | None = None) -> None:
    """Prepare the worker and hand it to `runpod.serverless.start`.

    `argv` (default: `sys.argv[1:]`) holds RunPod's own flags (`--test_input`, `--rp_serve_api`,
    `--rp_api_port`, ...); the SDK parses them from `sys.argv`, so they are passed through there.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    sys.argv = [sys.argv[0] or "volcache", *args]
    sdk = SdkImport()
    sdk.begin()  # runpod's CPU probe runs beside the model's imports
    try:
        worker, _ = prepare(sdk=sdk)
    except VolcacheError as exc:
        # A cause that may heal (the Hub, the volume) exits non-zero so the platform retries; so does
        # every cause in a one-job run (`--test_input`), where nobody waits for a second answer.
        if exc.retryable or runs_once(args, _settings_or_default()):
            raise
        _serve_the_cause(sdk, exc)
        return
    runpod = sdk.finish()

    once = runs_once(args, worker.settings)
    handler: Callable[[Any], Any] = worker.stream_handler
    if once:
        handler = worker.handler if worker.settings.runpod_realtime else _printing(worker.handler)
    runpod.serverless.start(
        {
            "handler": handler,
            "concurrency_modifier": worker.concurrency_modifier,
            "return_aggregate_stream": True,
        }
    )


def _settings_or_default() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError:
        return Settings()


def _serve_the_cause(sdk: SdkImport, exc: VolcacheError) -> None:
    """A cause a restart cannot fix (no such model, no token, no room, bad settings): stay up, answer every job with it.

    RunPod restarts a worker that exits, paying for each start; the user would see a crash loop in
    the logs instead of an answer (worker-vllm does the same, `src/startup_errors.py`).
    """
    cause = one_line(exc)
    log.error("volcache: the worker cannot start: %s; every job is answered with this error", cause)
    answer = {"error": f"The worker cannot start: {cause}"}

    async def refuse(job: Any) -> Any:
        yield answer

    runpod = sdk.finish()
    runpod.serverless.start({"handler": refuse, "return_aggregate_stream": True})


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m volcache.worker`: `start`, with volcache's errors as one line and exit status 1."""
    with errors_as_one_line() as boundary:
        with contextlib.suppress(ConfigError):  # bad settings are answered by `start`, job by job
            boundary.debug = Settings.from_env().debug
        start(argv)


def runs_once(argv: Sequence[str], settings: Settings) -> bool:
    """True where RunPod's SDK calls the handler as a plain function, which cannot stream.

    The SDK streams generator handlers from its job queue and from `--rp_serve_api`; its
    `--test_input` mode (and `test_input.json` when no queue is configured) and its realtime
    API call the handler once and expect one result.
    """
    flags = {a.split("=", 1)[0] for a in argv}
    if "--rp_serve_api" in flags:
        return False
    if "--test_input" in flags or settings.runpod_realtime:
        return True
    return not settings.runpod_job_queue


def go_offline() -> None:
    """Switch the Hugging Face libraries offline: the snapshot is complete on disk from here on (I5).

    huggingface_hub reads HF_HUB_OFFLINE at import; if the download already imported it, its
    flag is switched too, so any request a library still tries fails instead of reaching out.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants: Any = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def _printing(handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """RunPod's local test mode logs a result cut at 4096 characters; print it whole, as one JSON line."""

    async def printing_handler(job: Any) -> Any:
        output = await handler(job)
        print(RESULT_PREFIX + json.dumps(output), flush=True)
        return output

    return printing_handler


# -- timing facts ---------------------------------------------------------------------------------
def _prefetch_facts(prefetch: Prefetch | None) -> dict[str, object] | None:
    if prefetch is None:
        return None
    return {
        "bytes": prefetch.bytes_read,
        "seconds": round(prefetch.seconds, 3),
        "threads": prefetch.threads,
    }


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc), or None where that cannot be read."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


# -- disk facts ----------------------------------------------------------------------------------
def disk_facts(settings: Settings, resolution: Resolution, *, mounted: bool = True) -> DiskFacts:
    """Bytes on the volume, in this model, as weights on the container disk, and free.

    With `mounted=False` the "volume" is a folder of the container's disk: its bytes count as
    container disk, and `volume_bytes` is 0.
    """
    volume = settings.volume
    scratch = [p for p in (*settings.stale_caches, settings.ephemeral) if not _inside(p, volume)]
    on_volume = tree_bytes(settings.hub_cache)
    return DiskFacts(
        volume_bytes=on_volume if mounted else 0,
        model_bytes=resolution.bytes or snapshot_bytes(resolution.path),
        container_disk_weight_bytes=sum(weight_bytes(p) for p in scratch) + (0 if mounted else on_volume),
        free_bytes=free_bytes(settings.hub_cache if settings.hub_cache.exists() else volume),
    )


def _inside(path: Path, folder: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return real == base or real.startswith(base.rstrip("/") + "/")
