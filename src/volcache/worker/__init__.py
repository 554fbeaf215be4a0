"""The RunPod serverless worker: one Hugging Face model, its weights once on the volume, served to jobs.

Run it with `volcache serve [RUNPOD FLAGS]` or `python -m volcache.worker [RUNPOD FLAGS]`; RunPod's
flags (`--test_input '{"input": ...}'`, `--rp_serve_api --rp_api_port 8000`) pass through to its SDK.

Lifecycle, as LitServe states it for its servers:

1. **setup**, once: `prepare()` reads the settings, pins the caches on the volume, removes stale
   build caches, finds or downloads the model once per volume, loads it from the snapshot folder
   (`load_model`) and runs a warm-up inference; `start()` then imports RunPod's SDK (its
   py-cpuinfo probe already run beside the model's imports) and logs `volcache: started {json}`;
2. **decode**, per job: `Worker.decode` validates the input (pydantic) into a typed request;
3. **predict**: the model runs in a thread, off RunPod's event loop; streams yield as they go;
4. **encode**: the result becomes volcache's native output or OpenAI's shape.

Tasks (`MODEL_TASK`, detected from the model's files when unset) live in `volcache.worker.tasks`,
one file each behind one interface (`Task`): `embeddings` (sentence-transformers),
`text-generation` (prompt or chat messages, streaming), and any other transformers pipeline task
through `{"inputs": ..., "parameters": {...}}`. OpenAI input as
RunPod's workers take it: `{"openai_route": "/v1/embeddings" | "/v1/chat/completions" |
"/v1/models", "openai_input": {...}}`.

Importing this package imports neither torch nor any Hugging Face library: that happens in
`prepare()`, after the caches are pinned.
"""

from __future__ import annotations

from ._handler import Worker
from ._load import load_model, load_task
from ._schemas import JobError, Limits
from ._startup import RESULT_PREFIX, STARTED_PREFIX, DiskFacts, StartupReport, go_offline, main, prepare, start
from .tasks import TASKS, detect_task, normalize_task, task_class
from .tasks.base import JobContext, LoadContext, OpenAICall, Task
from .tasks.embeddings import EmbeddingsTask
from .tasks.generation import GenerationTask
from .tasks.pipeline import PipelineTask

__all__ = [
    "RESULT_PREFIX",
    "STARTED_PREFIX",
    "TASKS",
    "DiskFacts",
    "EmbeddingsTask",
    "GenerationTask",
    "JobContext",
    "JobError",
    "Limits",
    "LoadContext",
    "OpenAICall",
    "PipelineTask",
    "StartupReport",
    "Task",
    "Worker",
    "detect_task",
    "go_offline",
    "load_model",
    "load_task",
    "main",
    "normalize_task",
    "prepare",
    "start",
    "task_class",
]
