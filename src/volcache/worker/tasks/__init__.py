"""The tasks a worker can serve: the registry, and which task a snapshot serves.

Adding a task is one file in this package (a `Task` subclass, see `base.py`) and one line in
`TASKS`. Entries name their class as `"module:Class"` so that importing the registry imports no
model library; an engine other than a task's default is keyed `(task, engine)`.
`detect_task` reads the snapshot's small JSON files only (no torch import).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from ..._errors import ConfigError
from .base import JobContext, LoadContext, OpenAICall, Task

TASKS: dict[str | tuple[str, str], str] = {
    "embeddings": "volcache.worker.tasks.embeddings:EmbeddingsTask",
    "text-generation": "volcache.worker.tasks.generation:GenerationTask",
    "text-to-image": "volcache.worker.tasks.images:TextToImageTask",
    "image-to-image": "volcache.worker.tasks.images:ImageToImageTask",
    ("text-generation", "vllm"): "volcache.worker.tasks.vllm:VllmTask",
}
PIPELINE = "volcache.worker.tasks.pipeline:PipelineTask"  # any other transformers pipeline task


def task_class(task: str, engine: str | None = None) -> type[Task[Any]]:
    """The class serving `task` (with `engine` where one is asked for); unknown names are pipelines."""
    entry = TASKS.get((task, engine)) if engine else None
    entry = entry or TASKS.get(task, PIPELINE)
    module, _, name = entry.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, Task)
    return cls


EMBEDDINGS = "embeddings"
TEXT_GENERATION = "text-generation"
_ALIASES = {
    "embedding": EMBEDDINGS,
    "sentence-embeddings": EMBEDDINGS,
    "sentence-similarity": EMBEDDINGS,
    "sentence-transformers": EMBEDDINGS,
    "chat": TEXT_GENERATION,
    "generation": TEXT_GENERATION,
    "txt2img": "text-to-image",
    "img2img": "image-to-image",
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
TASK_HINT = (
    "embeddings, text-generation, text-to-image, image-to-image, or a transformers pipeline task such as "
    "text-classification"
)


def normalize_task(name: str) -> str:
    """The canonical name of a task (`MODEL_TASK`): aliases resolved, case and spaces ignored."""
    key = name.strip().lower().replace("_", "-")
    return _ALIASES.get(key, key)


def detect_task(path: Path, model: str | None = None) -> str:
    """The task of the model at `path`, from its files; `ConfigError` when they do not say."""
    what = model or str(path)
    if any((path / name).is_file() for name in _SENTENCE_TRANSFORMERS_FILES):
        return EMBEDDINGS
    from .images import detect_image_task  # a diffusers pipeline: model_index.json names its class

    image_task = detect_image_task(path)
    if image_task is not None:
        return image_task
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


__all__ = [
    "EMBEDDINGS",
    "TASKS",
    "TASK_HINT",
    "TEXT_GENERATION",
    "JobContext",
    "LoadContext",
    "OpenAICall",
    "Task",
    "detect_task",
    "normalize_task",
    "task_class",
]
