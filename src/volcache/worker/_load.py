"""Which task a model serves, and loading it from its snapshot folder with local files only.

`detect_task` reads the folder's small JSON files (no torch import); `load_model` is the one place
where weights are read, so how they are read (`VOLCACHE_LOAD`) is decided here and nowhere else.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from .._settings import Settings
from ..store import choose_strategy, claim_prefetch, from_pretrained_kwargs
from ._schemas import Limits
from ._tasks import EmbeddingsTask, GenerationTask, PipelineTask, Task, heavy

log = logging.getLogger("volcache.worker")

EMBEDDINGS = "embeddings"
TEXT_GENERATION = "text-generation"
_ALIASES = {
    "embedding": EMBEDDINGS,
    "sentence-embeddings": EMBEDDINGS,
    "sentence-similarity": EMBEDDINGS,
    "sentence-transformers": EMBEDDINGS,
    "chat": TEXT_GENERATION,
    "generation": TEXT_GENERATION,
}
_SENTENCE_TRANSFORMERS_FILES = ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")
# The end of a transformers architecture name, and the task it serves.
_ARCHITECTURE_TASKS = (
    ("ForCausalLM", TEXT_GENERATION),
    ("LMHeadModel", TEXT_GENERATION),
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForMaskedLM", "fill-mask"),
    ("ForImageClassification", "image-classification"),
    ("ForAudioClassification", "audio-classification"),
    ("ForCTC", "automatic-speech-recognition"),
    ("ForObjectDetection", "object-detection"),
)
TASK_HINT = "embeddings, text-generation, or a transformers pipeline task such as text-classification"


def normalize_task(name: str) -> str:
    """The canonical name of a task (`MODEL_TASK`): aliases resolved, case and spaces ignored."""
    key = name.strip().lower().replace("_", "-")
    return _ALIASES.get(key, key)


def detect_task(path: Path, model: str | None = None) -> str:
    """The task of the model at `path`, from its files; `ConfigError` when they do not say."""
    what = model or str(path)
    if any((path / name).is_file() for name in _SENTENCE_TRANSFORMERS_FILES):
        return EMBEDDINGS
    config = path / "config.json"
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except FileNotFoundError:
        raise ConfigError(
            f"cannot tell which task {what} serves: it has no config.json. Fix: set MODEL_TASK to {TASK_HINT}."
        ) from None
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"cannot read {config} ({exc}). Fix: set MODEL_TASK to {TASK_HINT}.") from None
    tasks = {task for arch in architectures for end, task in _ARCHITECTURE_TASKS if str(arch).endswith(end)}
    if len(tasks) == 1:
        return tasks.pop()
    listed = ", ".join(map(str, architectures)) or "none"
    raise ConfigError(
        f"cannot tell which task {what} serves from its config.json (architectures: {listed}). "
        f"Fix: set MODEL_TASK to {TASK_HINT}."
    )


def check_pipeline_task(task: str) -> str:
    """`task` as transformers names it (`sentiment-analysis` -> `text-classification`), or `ConfigError`."""
    from transformers.pipelines import SUPPORTED_TASKS, check_task

    try:
        return str(check_task(task)[0])
    except KeyError:
        known = ", ".join(sorted(SUPPORTED_TASKS))
        raise ConfigError(
            f"MODEL_TASK={task!r} is not a task volcache serves. Fix: use embeddings, text-generation or one "
            f"of the transformers pipeline tasks: {known}."
        ) from None


def resolve_device(requested: str) -> str:
    """`VOLCACHE_DEVICE`: `auto` is `cuda` when a GPU is visible, else `cpu`."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(path: Path, task: str, settings: Settings) -> Task:
    """Load the snapshot at `path` for `task` with local files only; the one place weights are read.

    `path` is the snapshot folder on the volume (never a repo id), so no library asks the Hub.
    `settings.load` (`VOLCACHE_LOAD`, see `volcache._loading`) says how the weight files are
    read in place: `mmap` (the libraries' default), `read` (whole files into memory) or
    `prefetch` (parallel reads into the page cache); `auto` picks `prefetch` on network
    filesystems, and on local disks unless the weights are in the page cache already (then
    `mmap`). Nothing is copied.

    A prefetch that `prepare()` started when the store resolved the snapshot is claimed here; it
    runs on while torch and the model libraries are imported and while the model is built (the
    loader's reads then find its pages in the page cache or wait on those in flight, so no byte
    is fetched twice), and is awaited at the end, before the warm-up touches the weights.
    Overlapping the build measured faster than waiting before it (docs/performance.md). Inside
    `load_phases()` the time of each step is recorded: import, construct, prefetch_wait.
    """
    strategy = choose_strategy(settings.load, path)
    prefetch = claim_prefetch(path, strategy)
    limits = Limits.from_settings(settings)
    folder = str(path)
    with _phase("import"):
        device = resolve_device(settings.device)
        _quiet_progress_bars()
        library = heavy("sentence_transformers" if task == EMBEDDINGS else "transformers")
        read_kwargs = from_pretrained_kwargs(strategy)
        name = task if task in (EMBEDDINGS, TEXT_GENERATION) else check_pipeline_task(task)
    with _phase("construct"):
        loaded = _construct(library, folder, name, device, limits, read_kwargs)
    with _phase("prefetch_wait"):
        if prefetch is not None:
            prefetch.wait()
            log.info(
                "volcache: prefetched %d bytes in %.2fs (%d threads)",
                prefetch.bytes_read,
                prefetch.seconds,
                prefetch.threads,
            )
    return loaded


def _construct(
    library: Any, folder: str, task: str, device: str, limits: Limits, read_kwargs: dict[str, object]
) -> Task:
    if task == EMBEDDINGS:
        model = library.SentenceTransformer(
            folder, device=device, local_files_only=True, model_kwargs=read_kwargs or None
        )
        return EmbeddingsTask(model, limits)
    if task == TEXT_GENERATION:
        tokenizer = library.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        lm = library.AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, **_dtype_kwargs(device), **read_kwargs
        )
        lm.to(device).eval()
        return GenerationTask(lm, tokenizer, device, limits)
    # pipeline() passes local_files_only itself in offline mode (go_offline() ran before the load).
    pipe = library.pipeline(task, model=folder, device=device, model_kwargs=read_kwargs)
    return PipelineTask(pipe, task)


_load_phases: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
    "volcache_load_phases", default=None
)


@contextlib.contextmanager
def load_phases() -> Iterator[dict[str, float]]:
    """Collect, in the dict it yields, the seconds each step of `load_model` called inside takes."""
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
    """Progress bars are for terminals; in a worker's log they are noise (and \r-garbled)."""
    if sys.stderr.isatty():
        return
    heavy("transformers.utils.logging").disable_progress_bar()


def _dtype_kwargs(device: str) -> dict[str, Any]:
    """On a GPU, load in the checkpoint's dtype (bf16/fp16) instead of float32."""
    if not device.startswith("cuda"):
        return {}
    from importlib import metadata

    major, minor = (int(x) for x in metadata.version("transformers").split(".")[:2])
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": "auto"}  # renamed in 4.56
