"""The worker on the real all-MiniLM-L6-v2, downloaded through the offline Hub emulator.

One `--rp_serve_api` server per module (real HTTP to `/runsync`), then a second process with
`--test_input` on the same volume: the warm start must make zero requests. The last test scans
HOME, TMPDIR and the ephemeral folder: no weight byte may land outside the volume.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from volcache.testing import HubEmulator, minilm_folder, mirror_root_with

from ._support import MINILM, Sandbox, WorkerServer, cosine, run_test_input, weight_files

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubEmulator]:
    root = mirror_root_with(tmp_path_factory.mktemp("hub"), {MINILM: minilm_folder()})
    with HubEmulator(root) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    return Sandbox(tmp_path_factory.mktemp("embeddings"))


@pytest.fixture(scope="module")
def server(sandbox: Sandbox, hub: HubEmulator) -> Iterator[WorkerServer]:
    env = sandbox.env(HF_ENDPOINT=hub.url, MODEL_NAME=MINILM, VOLCACHE_MAX_BATCH="8", VOLCACHE_MAX_INPUT_CHARS="500")
    with WorkerServer.running(env, sandbox.base / "server.log") as worker:
        yield worker


def test_cold_start_downloads_once_onto_the_volume_and_logs_one_timing_line(
    server: WorkerServer, sandbox: Sandbox, hub: HubEmulator
) -> None:
    report = server.started()
    assert report["source"] == "download"
    assert report["task"] == "embeddings"
    assert set(report["timings_s"]) == {"pin", "cleanup", "ensure", "load", "warmup", "runpod_import", "total"}
    assert report["timings_s"]["total"] >= report["timings_s"]["load"] > 0
    # Loaded from the snapshot folder on the volume, never by repo id.
    snapshot = Path(report["path"])
    assert snapshot.is_relative_to(sandbox.volume) and snapshot.parent.name == "snapshots"
    weights = (minilm_folder() / "model.safetensors").stat().st_size
    assert report["downloaded_bytes"] >= weights
    assert report["disk"]["volume_bytes"] >= weights
    assert report["disk"]["container_disk_weight_bytes"] == 0
    assert hub.stats.bytes_per_file[f"{MINILM}/model.safetensors"] == weights, "the weights are served once"
    assert server.log().count("volcache: started ") == 1


def test_openai_embeddings_returns_two_384_dim_vectors_in_openai_shape(server: WorkerServer) -> None:
    out = server.one({"openai_route": "/v1/embeddings", "openai_input": {"input": ["a", "b"], "model": MINILM}})
    assert out["object"] == "list"
    assert out["model"] == MINILM
    assert [d["index"] for d in out["data"]] == [0, 1]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 384 for d in out["data"])
    assert out["usage"]["prompt_tokens"] == out["usage"]["total_tokens"] > 0


def test_openai_embeddings_base64_and_dimensions(server: WorkerServer) -> None:
    b64 = server.one(
        {"openai_route": "/v1/embeddings", "openai_input": {"input": "hello", "encoding_format": "base64"}}
    )
    raw = base64.b64decode(b64["data"][0]["embedding"])
    floats = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(floats) == 384
    short = server.one({"openai_route": "/v1/embeddings", "openai_input": {"input": "hello", "dimensions": 64}})
    vector = short["data"][0]["embedding"]
    assert len(vector) == 64
    assert abs(sum(x * x for x in vector) - 1) < 1e-4  # re-normalised after truncation


def test_openai_models_lists_the_served_model(server: WorkerServer) -> None:
    out = server.one({"openai_route": "/v1/models"})
    assert out["object"] == "list"
    assert [m["id"] for m in out["data"]] == [MINILM]


def test_paraphrases_are_closer_than_unrelated_sentences(server: WorkerServer) -> None:
    sentences = [
        "A cat is sleeping on the sofa.",
        "A kitten naps on the couch.",
        "The stock market fell sharply today.",
    ]
    out = server.one({"input": sentences})
    vectors = out["embeddings"]
    assert out["dimensions"] == 384 and len(vectors) == 3
    assert all(abs(sum(x * x for x in v) - 1) < 1e-4 for v in vectors)  # normalised by default
    paraphrase, unrelated = cosine(vectors[0], vectors[1]), cosine(vectors[0], vectors[2])
    assert paraphrase > unrelated + 0.3, (paraphrase, unrelated)


@pytest.mark.parametrize(
    ("job_input", "expected"),
    [
        ({"input": []}, "`input` is empty"),
        ({"input": [1, 2]}, "token ids"),
        ({"input": "x", "normalise": True}, "`normalise` is not a field"),
        ({"input": ["x"] * 9}, "VOLCACHE_MAX_BATCH"),
        ({"input": "x" * 501}, "VOLCACHE_MAX_INPUT_CHARS"),
        ({}, "`input` is required"),
        ({"openai_route": "/v1/completions", "openai_input": {"prompt": "x"}}, "is not served"),
        ({"openai_route": "/v1/chat/completions", "openai_input": {"messages": []}}, "text-generation workers"),
        (
            {"openai_route": "/v1/embeddings", "openai_input": {"input": "x", "dimensions": 999}},
            "above this model's 384",
        ),
    ],
)
def test_a_bad_job_gets_one_error_sentence_and_the_next_job_succeeds(
    server: WorkerServer, job_input: dict[str, object], expected: str
) -> None:
    (error,) = server.runsync(job_input)
    assert set(error) == {"error"}
    message = error["error"]
    assert isinstance(message, str) and expected in message
    assert message.endswith(".") and "\n" not in message
    good = server.one({"input": "still serving"})
    assert len(good["embeddings"][0]) == 384
    assert server.proc.poll() is None


def test_run_then_stream_endpoints(server: WorkerServer) -> None:
    job = server.post("/run", {"input": {"input": "queued"}})
    assert job["status"] == "IN_PROGRESS"
    streamed = server.post(f"/stream/{job['id']}", {})
    assert streamed["status"] == "COMPLETED"
    (chunk,) = streamed["stream"]
    assert len(chunk["output"]["embeddings"][0]) == 384


def test_warm_start_with_test_input_makes_no_request(server: WorkerServer, sandbox: Sandbox, hub: HubEmulator) -> None:
    before = hub.stats.requests
    run = run_test_input(sandbox.env(HF_ENDPOINT=hub.url, MODEL_NAME=MINILM), {"input": ["warm", "start"]})
    assert run.proc.returncode == 0, run.output[-3000:]
    assert hub.stats.requests == before, "a warm start must not talk to the Hub"
    assert run.started["source"] == "volume"
    assert run.started["timings_s"]["ensure"] < 1
    assert [len(v) for v in run.result["embeddings"]] == [384, 384]


def test_a_bad_test_input_exits_1_with_the_error(sandbox: Sandbox, hub: HubEmulator) -> None:
    run = run_test_input(sandbox.env(HF_ENDPOINT=hub.url, MODEL_NAME=MINILM), {"inputs_typo": ["x"]})
    assert run.proc.returncode == 1
    assert run.result == {"error": run.result["error"]}
    assert "`inputs_typo` is not a field" in run.result["error"]


def test_no_weight_byte_was_written_outside_the_volume(server: WorkerServer, sandbox: Sandbox) -> None:
    # Runs last in this module: after the server, the warm start and the failed job.
    assert weight_files(*sandbox.container_disk()) == []
    weights = (minilm_folder() / "model.safetensors").stat().st_size
    copies = [path for path, size in weight_files(sandbox.volume) if size == weights]
    assert len(copies) == 1, copies  # one copy, in the cache on the volume
