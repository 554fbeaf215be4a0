"""A Stable Diffusion-style pipeline served end to end: Hub emulator → volume → `--rp_serve_api` and `--test_input`.

One worker (`MODEL_VARIANT=fp16`, task detected from `model_index.json`) serves every test of
this module through RunPod's local API, in volcache's native shape and OpenAI's.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.worker._support import Sandbox, WorkerServer, run_test_input, weight_files
from volcache.testing import HubEmulator, mirror_root_with

pytestmark = pytest.mark.slow
REPO = "volcache-tests/tiny-sd"
JOB = {"prompt": "a red fox in the snow", "width": 64, "height": 64, "num_inference_steps": 2, "seed": 11}


def decode(b64: str) -> Any:
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def mean_difference(a: Any, b: Any) -> float:
    """Mean absolute difference of two same-size RGB images, in 0–255 levels."""
    pairs = zip(a.convert("RGB").tobytes(), b.convert("RGB").tobytes(), strict=True)
    return sum(abs(x - y) for x, y in pairs) / (a.width * a.height * 3)


def png_data_url(width: int, height: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 90, 200)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, tiny_pipelines: dict[str, Path]) -> Iterator[HubEmulator]:
    root = mirror_root_with(tmp_path_factory.mktemp("hub"), {REPO: tiny_pipelines["sd"]})
    with HubEmulator(root) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    return Sandbox(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def server(sandbox: Sandbox, hub: HubEmulator) -> Iterator[WorkerServer]:
    env = sandbox.env(HF_ENDPOINT=hub.url, MODEL_NAME=REPO, MODEL_VARIANT="fp16", VOLCACHE_MAX_IMAGES="2")
    with WorkerServer.running(env, sandbox.base / "server.log") as worker:
        yield worker


def test_the_task_is_detected_from_model_index(server: WorkerServer) -> None:
    started = server.started()
    assert started["task"] == "text-to-image" and started["source"] == "download", started


def test_a_64x64_image_decodes_to_64x64(server: WorkerServer) -> None:
    output = server.one(JOB)
    assert set(output) == {"images", "seed", "parameters"}, output
    (image_b64,) = output["images"]
    image = decode(image_b64)
    assert (image.format, image.size) == ("PNG", (64, 64))
    assert output["seed"] == 11
    assert output["parameters"]["num_inference_steps"] == 2
    assert output["parameters"]["scheduler"] == "EulerDiscreteScheduler"


def test_the_same_seed_gives_identical_bytes(server: WorkerServer) -> None:
    first, second = server.one(JOB)["images"][0], server.one(JOB)["images"][0]
    assert hashlib.sha256(first.encode()).digest() == hashlib.sha256(second.encode()).digest()
    other = server.one({**JOB, "seed": 12})["images"][0]
    assert other != first


def test_image_i_of_a_batch_starts_from_seed_plus_i(server: WorkerServer) -> None:
    """The same batch twice is the same bytes; alone, seed + i gives image i up to batching's float noise."""
    batch = server.one({**JOB, "num_images": 2})
    assert len(batch["images"]) == 2 and batch["seed"] == 11
    assert server.one({**JOB, "num_images": 2})["images"] == batch["images"]
    alone = decode(server.one({**JOB, "seed": 12})["images"][0])
    second, first = decode(batch["images"][1]), decode(batch["images"][0])
    assert mean_difference(second, alone) < 2 < mean_difference(first, alone)


def test_without_a_seed_the_answer_says_which_was_used(server: WorkerServer) -> None:
    job = {k: v for k, v in JOB.items() if k != "seed"}
    output = server.one(job)
    assert output["images"][0] == server.one({**job, "seed": output["seed"]})["images"][0]


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({**JOB, "width": 63}, "`width` must be a multiple of 8 (63 is not; 56 or 64 is)"),
        ({**JOB, "image": "%%% not base64"}, "`image` is not valid base64"),
        ({**JOB, "image": base64.b64encode(b"GIF89a but broken").decode()}, "`image` is not a readable image"),
        ({**JOB, "num_images": 3}, "VOLCACHE_MAX_IMAGES"),
        ({**JOB, "scheduler": "NoSuchScheduler"}, "`scheduler` 'NoSuchScheduler' is not one StableDiffusionPipeline"),
        ({"prompt": ""}, "`prompt` is empty"),
        ({**JOB, "negative_prompt": 5}, "`negative_prompt` should be a valid string"),
    ],
)
def test_a_bad_job_gets_an_error_naming_the_rule_and_the_next_job_succeeds(
    server: WorkerServer, job: Any, expected: str
) -> None:
    (error,) = server.runsync(job)
    assert set(error) == {"error"} and expected in error["error"], error
    assert decode(server.one(JOB)["images"][0]).size == (64, 64)


def test_another_scheduler_by_name(server: WorkerServer) -> None:
    output = server.one({**JOB, "scheduler": "DDIMScheduler"})
    assert output["parameters"]["scheduler"] == "DDIMScheduler"
    assert output["images"][0] != server.one(JOB)["images"][0]


@pytest.mark.parametrize(("fmt", "pil"), [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_output_formats(server: WorkerServer, fmt: str, pil: str) -> None:
    image = decode(server.one({**JOB, "output_format": fmt})["images"][0])
    assert (image.format, image.size) == (pil, (64, 64))


def test_image_to_image_from_a_data_url(server: WorkerServer) -> None:
    output = server.one({**JOB, "image": png_data_url(80, 48), "strength": 0.5, "width": None, "height": None})
    assert decode(output["images"][0]).size == (80, 48)  # the init image's size, multiples of 8
    assert output["parameters"]["strength"] == 0.5
    resized = server.one({**JOB, "image": png_data_url(80, 48), "strength": 0.5})
    assert decode(resized["images"][0]).size == (64, 64)


def test_openai_images_generations(server: WorkerServer) -> None:
    body = {"prompt": "a red fox", "n": 2, "size": "64x32", "response_format": "b64_json", "model": REPO}
    (response,) = server.runsync({"openai_route": "/v1/images/generations", "openai_input": body})
    assert isinstance(response["created"], int) and len(response["data"]) == 2, response
    assert [decode(item["b64_json"]).size for item in response["data"]] == [(64, 32), (64, 32)]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"prompt": "x", "size": "64by64"}, "`size` must be WIDTHxHEIGHT"),
        ({"prompt": "x", "size": "63x64"}, "must be a multiple of 8"),
        ({"prompt": "x", "response_format": "url"}, "BUCKET_ENDPOINT_URL"),
        ({"size": "64x64"}, "`prompt` is required"),
    ],
)
def test_openai_bad_requests(server: WorkerServer, body: dict[str, Any], expected: str) -> None:
    (error,) = server.runsync({"openai_route": "/v1/images/generations", "openai_input": body})
    assert set(error) == {"error"} and expected in error["error"], error


def test_only_the_variant_files_were_downloaded(server: WorkerServer, hub: HubEmulator) -> None:
    """MODEL_VARIANT=fp16: the store's selection (issue 13) downloads each component's fp16 file, nothing else."""
    downloaded = {path.removeprefix(REPO + "/") for path in hub.stats.per_file}
    weights = {p for p in downloaded if p.endswith(".safetensors")}
    assert weights == {
        "text_encoder/model.fp16.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    }


def test_a_warm_start_with_test_input_is_offline(sandbox: Sandbox, hub: HubEmulator, server: WorkerServer) -> None:
    hub.stats.reset()
    env = sandbox.env(HF_ENDPOINT=hub.url, MODEL_NAME=REPO, MODEL_VARIANT="fp16")
    run = run_test_input(env, JOB)
    assert run.proc.returncode == 0, run.output[-3000:]
    assert run.started["source"] == "volume" and hub.stats.requests == 0
    assert run.result["images"][0] == server.one(JOB)["images"][0]  # the same bytes from another process


def test_no_weight_byte_was_written_outside_the_volume(server: WorkerServer, sandbox: Sandbox) -> None:
    assert weight_files(*sandbox.container_disk()) == []
