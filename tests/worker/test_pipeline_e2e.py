"""Any other transformers pipeline (a tiny sentiment classifier), and a model given as a local folder.

The classifier comes through the Hub emulator with MODEL_TASK unset (detected from its config);
the tiny sentence-transformers model is served in place from a local path with `--test_input`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from volcache.testing import HubEmulator, mirror_root_with

from ._support import TINY_CLASSIFIER, Sandbox, WorkerServer, run_test_input, weight_files

pytestmark = pytest.mark.slow
LABELS = {"NEGATIVE", "POSITIVE"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Iterator[HubEmulator]:
    root = mirror_root_with(tmp_path_factory.mktemp("hub"), {TINY_CLASSIFIER: tiny_models["classifier"]})
    with HubEmulator(root) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    return Sandbox(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="module")
def server(sandbox: Sandbox, hub: HubEmulator) -> Iterator[WorkerServer]:
    env = sandbox.env(HF_ENDPOINT=hub.url, MODEL_NAME=TINY_CLASSIFIER)
    with WorkerServer.running(env, sandbox.base / "server.log") as worker:
        yield worker


def test_task_is_detected_as_text_classification(server: WorkerServer) -> None:
    assert server.started()["task"] == "text-classification"


def test_inference_api_shape(server: WorkerServer) -> None:
    (single,) = server.one({"inputs": "i love this movie"})
    assert single["label"] in LABELS and 0 <= single["score"] <= 1
    batch = server.one({"inputs": ["i love this movie", "i hate this film"]})
    assert len(batch) == 2 and all(item["label"] in LABELS for item in batch)
    both = server.one({"inputs": "great", "parameters": {"top_k": 2}})
    assert {item["label"] for item in both} == LABELS
    assert abs(sum(item["score"] for item in both) - 1) < 1e-4


@pytest.mark.parametrize(
    ("job_input", "expected"),
    [
        ({"inputs": "x", "parameters": {"truncation": "zzz"}}, "`parameters.truncation` must be true or false"),
        ({"inputs": "x", "parameters": {"zzz": 1}}, "`zzz` is not a parameter of this pipeline"),
        ({"inputs": " ".join(["word"] * 200)}, "has 202 tokens, above this model's limit of 128"),
        ({"inputs": []}, "`inputs` is empty"),
        ({"input": "x"}, "`input` is not a field"),
        ({"openai_route": "/v1/models", "openai_input": {}, "extra": 1}, "`extra` is not a field"),
    ],
)
def test_a_bad_job_gets_one_error_sentence_and_the_next_job_succeeds(
    server: WorkerServer, job_input: dict[str, object], expected: str
) -> None:
    (error,) = server.runsync(job_input)
    assert set(error) == {"error"} and expected in error["error"], error
    assert server.one({"inputs": "fine"})[0]["label"] in LABELS


def test_a_long_input_is_truncated_when_the_client_asks(server: WorkerServer) -> None:
    (out,) = server.one({"inputs": " ".join(["word"] * 200), "parameters": {"truncation": True}})
    assert out["label"] in LABELS


def test_test_input_on_the_classifier(sandbox: Sandbox, hub: HubEmulator, server: WorkerServer) -> None:
    run = run_test_input(sandbox.env(HF_ENDPOINT=hub.url, MODEL_NAME=TINY_CLASSIFIER), {"inputs": "sunny today"})
    assert run.proc.returncode == 0, run.output[-3000:]
    assert run.result[0]["label"] in LABELS
    assert run.started["source"] == "volume"


def test_a_local_folder_is_served_in_place(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    sandbox = Sandbox(tmp_path)
    folder = tiny_models["sentence-transformer"]
    run = run_test_input(sandbox.env(MODEL_NAME=str(folder), HF_ENDPOINT="http://127.0.0.1:9"), {"input": ["a", "b"]})
    assert run.proc.returncode == 0, run.output[-3000:]
    assert run.started["source"] == "local" and run.started["path"] == str(folder)
    assert [len(v) for v in run.result["embeddings"]] == [32, 32]
    assert weight_files(*sandbox.container_disk(), sandbox.volume) == []


def test_no_weight_byte_was_written_outside_the_volume(server: WorkerServer, sandbox: Sandbox) -> None:
    assert weight_files(*sandbox.container_disk()) == []
