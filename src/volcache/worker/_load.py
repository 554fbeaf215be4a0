"""Which task a model serves, and loading it from its snapshot folder with local files only.

`detect_task` reads the folder's small JSON files (no torch import); `load_model` is the one place
where weights are read, so how they are read (`VOLCACHE_LOAD`) is decided here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from .._loading import choose_strategy, from_pretrained_kwargs, start_prefetch
from .._settings import Settings
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
    `prefetch` (parallel reads into the page cache while torch is imported); `auto` picks
    `prefetch` on network filesystems and `mmap` on local disks. Nothing is copied.
    """
    strategy = choose_strategy(settings.load, path)
    prefetch = start_prefetch(path, strategy)  # reads the weights while torch is imported
    device = resolve_device(settings.device)
    limits = Limits.from_settings(settings)
    folder = str(path)
    _quiet_progress_bars()
    if prefetch is not None:
        prefetch.wait()
    read_kwargs = from_pretrained_kwargs(strategy)
    if task == EMBEDDINGS:
        model = heavy("sentence_transformers").SentenceTransformer(
            folder, device=device, local_files_only=True, model_kwargs=read_kwargs or None
        )
        return EmbeddingsTask(model, limits)
    transformers = heavy("transformers")
    if task == TEXT_GENERATION:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        lm = transformers.AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, **_dtype_kwargs(device), **read_kwargs
        )
        lm.to(device).eval()
        return GenerationTask(lm, tokenizer, device, limits)
    name = check_pipeline_task(task)
    # pipeline() passes local_files_only itself in offline mode (go_offline() ran before the load).
    pipe = transformers.pipeline(name, model=folder, device=device, model_kwargs=read_kwargs)
    return PipelineTask(pipe, name)


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
