"""The loaded pipeline itself, in a child process: progress updates, warm-up size, the memory fallback.

A child process keeps torch and diffusers out of the test process. It loads the tiny SD pipeline
through `TextToImageTask.load` (the worker's `LoadContext`), runs jobs with a recording
`JobContext`, and prints what it saw as one JSON line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import subprocess_env
from volcache.worker.tasks.images import resolve_dtype

_SCRIPT = r"""
import json, sys
from pathlib import Path
from volcache import Settings
from volcache.worker import JobContext, JobError
from volcache.worker._load import load_context
from volcache.worker.tasks.images import TextToImageTask
import torch

settings = Settings.from_env()
task = TextToImageTask.load(load_context(Path(sys.argv[1]), "text-to-image", settings))
pipeline, seen = task.pipeline, {}
seen["smallest"], seen["multiple"], seen["native"] = pipeline.smallest_side, pipeline.multiple, pipeline.native_side
seen["dtype"] = str(pipeline.pipe.dtype)
task.warmup()
updates = []
job = JobContext("job-1", "tiny", on_progress=updates.append)
request = task.decode({"prompt": "a boat", "width": 32, "height": 32, "num_inference_steps": 20, "seed": 1})
(plain,) = task.run(request, job)
seen["progress"] = [{k: v for k, v in u.items() if k != "seconds"} for u in updates]

real_call, calls = pipeline._call, []
def out_of_memory_once(pipe, kwargs):
    calls.append(1)
    if len(calls) == 1:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return real_call(pipe, kwargs)
pipeline._call = out_of_memory_once
request = task.decode({"prompt": "a boat", "width": 32, "height": 32, "num_inference_steps": 2, "seed": 1})
(fallback,) = task.run(request, JobContext("job-2", "tiny"))
seen["fallback_memory"] = fallback["parameters"].get("memory")
def always_out_of_memory(pipe, kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory")
pipeline._call = always_out_of_memory
try:
    list(task.run(request, JobContext("job-3", "tiny")))
except JobError as exc:
    seen["does_not_fit"] = str(exc)
pipeline._call = real_call
(after,) = task.run(request, JobContext("job-4", "tiny"))
seen["after_memory"] = after["parameters"].get("memory")
print("RESULT " + json.dumps(seen))
"""


@pytest.fixture(scope="module")
def seen(tiny_pipelines: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("pipeline")
    env = subprocess_env(base / "volume", HOME=str(base / "home"), HF_HUB_OFFLINE="1", MODEL_VARIANT="fp16")
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tiny_pipelines["sd"])], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    data: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return data


def test_fp16_variant_files_load_in_float32_on_the_cpu(seen: dict[str, Any]) -> None:
    assert seen["dtype"] == "torch.float32"


def test_sizes_follow_the_pipeline(seen: dict[str, Any]) -> None:
    # The tiny VAE halves once, the UNet once more: 8 is the multiple and the smallest side.
    assert (seen["multiple"], seen["smallest"], seen["native"]) == (8, 8, 32)


def test_progress_every_few_steps_as_step_k_of_n(seen: dict[str, Any]) -> None:
    assert seen["progress"] == [{"step": k, "steps": 20} for k in (2, 4, 6, 8, 10, 12, 14, 16, 18, 20)]


def test_out_of_memory_retries_with_slicing_and_tiling_then_refuses(seen: dict[str, Any]) -> None:
    assert seen["fallback_memory"] == ["attention_slicing", "vae_tiling"]
    assert seen["does_not_fit"] == (
        "1 image(s) of 32×32 do not fit in this worker's memory, even with attention slicing and VAE tiling; "
        "ask for fewer pixels or fewer images."
    )
    assert seen["after_memory"] is None  # the next job that fits runs without them on the CPU


@pytest.mark.parametrize(
    ("requested", "device", "variant", "expected"),
    [
        ("auto", "cpu", None, "float32"),
        ("auto", "cpu", "fp16", "float32"),
        ("auto", "cuda", "fp16", "float16"),
        ("auto", "cuda:1", "bf16", "bfloat16"),
        ("float16", "cpu", None, "float16"),
        ("bfloat16", "cuda", "fp16", "bfloat16"),
    ],
)
def test_dtype(requested: str, device: str, variant: str | None, expected: str) -> None:
    assert resolve_dtype(requested, device, variant) == expected
