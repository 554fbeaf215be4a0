"""An SDXL-style pipeline (two text encoders) with the RunPod bucket variables set: images come back as URLs.

The bucket is moto's S3 server on 127.0.0.1 (never the internet); the worker uploads with
RunPod's own helper and answers presigned URLs, which are fetched here and decoded.
"""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.worker._support import Sandbox, WorkerServer, run_test_input
from volcache.testing import HubEmulator, mirror_root_with

pytestmark = pytest.mark.slow
REPO = "volcache-tests/tiny-sdxl"
BUCKET = "images"
JOB = {"prompt": "a castle on a hill", "width": 64, "height": 48, "num_inference_steps": 2, "seed": 5}
KEYS = {"BUCKET_ACCESS_KEY_ID": "testing-key", "BUCKET_SECRET_ACCESS_KEY": "testing-secret-value"}


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """moto's S3-compatible server on a free local port, with one bucket; yields its URL."""
    boto3 = pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=KEYS["BUCKET_ACCESS_KEY_ID"],
            aws_secret_access_key=KEYS["BUCKET_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket=BUCKET)
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, tiny_pipelines: dict[str, Path]) -> Iterator[HubEmulator]:
    root = mirror_root_with(tmp_path_factory.mktemp("hub"), {REPO: tiny_pipelines["sdxl"]})
    with HubEmulator(root) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    return Sandbox(tmp_path_factory.mktemp("sdxl"))


@pytest.fixture(scope="module")
def server(sandbox: Sandbox, hub: HubEmulator, s3: str) -> Iterator[WorkerServer]:
    env = sandbox.env(HF_ENDPOINT=hub.url, MODEL_NAME=REPO, BUCKET_ENDPOINT_URL=s3, BUCKET_NAME=BUCKET, **KEYS)
    with WorkerServer.running(env, sandbox.base / "server.log") as worker:
        yield worker


def fetch_image(url: str) -> Any:
    from PIL import Image

    with urllib.request.urlopen(url, timeout=30) as response:
        image = Image.open(io.BytesIO(response.read()))
        image.load()
    return image


def test_images_are_uploaded_and_urls_returned(server: WorkerServer, s3: str) -> None:
    assert server.started()["task"] == "text-to-image"
    output = server.one(JOB)
    (url,) = output["images"]
    assert url.startswith(f"{s3}/{BUCKET}/"), url
    image = fetch_image(url)
    assert (image.format, image.size) == ("PNG", (64, 48))


def test_the_same_seed_gives_the_same_bytes_through_the_bucket(server: WorkerServer) -> None:
    first, second = (fetch_image(server.one(JOB)["images"][0]).tobytes() for _ in range(2))
    assert first == second


def test_base64_when_the_job_asks_for_it(server: WorkerServer) -> None:
    output = server.one({**JOB, "upload": False, "output_format": "webp"})
    assert not output["images"][0].startswith("http")


def test_openai_url_response(server: WorkerServer, s3: str) -> None:
    body = {"prompt": "a castle", "size": "32x32", "response_format": "url"}
    (response,) = server.runsync({"openai_route": "/v1/images/generations", "openai_input": body})
    (item,) = response["data"]
    assert item["url"].startswith(s3) and fetch_image(item["url"]).size == (32, 32)


def test_the_bucket_secret_is_never_logged(server: WorkerServer) -> None:
    assert KEYS["BUCKET_SECRET_ACCESS_KEY"] not in server.log()


def test_test_input_without_a_bucket_gives_base64(sandbox: Sandbox, hub: HubEmulator, server: WorkerServer) -> None:
    run = run_test_input(sandbox.env(HF_ENDPOINT=hub.url, MODEL_NAME=REPO), JOB)
    assert run.proc.returncode == 0, run.output[-3000:]
    assert run.started["source"] == "volume" and len(run.result["images"]) == 1
    assert not run.result["images"][0].startswith("http")
