"""On a GPU every task asks for its weights on the device as they are read; on the CPU for nothing.

The loaders' keyword arguments are checked against fake libraries (no GPU here): `device_map`
and `dtype="auto"` reach `from_pretrained` / `pipeline()`, and nothing moves a built model.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from volcache.worker._schemas import Limits
from volcache.worker.tasks import generation, pipeline
from volcache.worker.tasks._placement import placement_kwargs
from volcache.worker.tasks.base import LoadContext
from volcache.worker.tasks.pipeline import pipeline_placement


def test_placement_on_cuda_maps_the_device_and_keeps_the_checkpoint_dtype() -> None:
    assert placement_kwargs("cuda") == {"device_map": "cuda", "dtype": "auto"}
    assert placement_kwargs("cuda:1") == {"device_map": "cuda:1", "dtype": "auto"}
    assert pipeline_placement("cuda") == {"device_map": "cuda", "dtype": "auto"}


def test_placement_on_cpu_asks_for_nothing() -> None:
    assert placement_kwargs("cpu") == {}
    assert pipeline_placement("cpu") == {"device": "cpu"}


class _Model:
    def __init__(self, calls: list[tuple[str, Any]]) -> None:
        self.calls = calls
        self.config = types.SimpleNamespace(max_position_embeddings=64)

    def eval(self) -> _Model:
        return self

    def to(self, device: Any) -> _Model:  # must not be called: the weights were placed as read
        self.calls.append(("to", device))
        return self


def _ctx(tmp_path: Path, device: str, task: str) -> LoadContext:
    return LoadContext(
        path=tmp_path, model="m", task=task, settings=None,  # type: ignore[arg-type]
        device=device, limits=Limits(), strategy="mmap", read_kwargs={},
    )  # fmt: skip


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_generation_loads_onto_the_device_as_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    calls: list[tuple[str, Any]] = []

    def from_pretrained(folder: str, **kwargs: Any) -> _Model:
        calls.append(("from_pretrained", kwargs))
        return _Model(calls)

    fake = types.SimpleNamespace(
        AutoTokenizer=types.SimpleNamespace(from_pretrained=lambda folder, **kw: object()),
        AutoModelForCausalLM=types.SimpleNamespace(from_pretrained=from_pretrained),
    )
    monkeypatch.setattr(generation, "heavy", lambda name: fake)
    task = generation.GenerationTask.load(_ctx(tmp_path, device, "text-generation"))
    assert task.device == device
    expected = {"local_files_only": True, **({"device_map": "cuda", "dtype": "auto"} if device == "cuda" else {})}
    assert calls == [("from_pretrained", expected)]  # and no ("to", ...) after it


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_pipelines_load_onto_the_device_as_they_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    seen: list[dict[str, Any]] = []

    def make_pipeline(name: str, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return types.SimpleNamespace(model=_Model([]))

    monkeypatch.setattr(pipeline, "heavy", lambda name: types.SimpleNamespace(pipeline=make_pipeline))
    pipeline.PipelineTask.load(_ctx(tmp_path, device, "text-classification"))
    placement = {"device_map": "cuda", "dtype": "auto"} if device == "cuda" else {"device": "cpu"}
    assert seen == [{"model": str(tmp_path), "model_kwargs": {}, **placement}]
