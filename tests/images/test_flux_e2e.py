"""A FLUX-style pipeline (a transformer over packed latents, CLIP and T5 encoders) through `--test_input`.

Served from the Hub emulator with `MODEL_VARIANT=bf16`: the bf16 files load in float32 on the CPU.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest

from tests.worker._support import Sandbox, run_test_input
from volcache.testing import HubEmulator, mirror_root_with

pytestmark = pytest.mark.slow
REPO = "volcache-tests/tiny-flux"


def test_a_flux_style_pipeline_serves_one_image(tmp_path: Path, tiny_pipelines: dict[str, Path]) -> None:
    from PIL import Image

    sandbox = Sandbox(tmp_path)
    job = {"prompt": "a quick brown fox", "width": 64, "height": 48, "num_inference_steps": 2, "seed": 9}
    with HubEmulator(mirror_root_with(tmp_path / "hub", {REPO: tiny_pipelines["flux"]})) as hub:
        run = run_test_input(sandbox.env(HF_ENDPOINT=hub.url, MODEL_NAME=REPO, MODEL_VARIANT="bf16"), job)
    assert run.proc.returncode == 0, run.output[-3000:]
    assert run.started["task"] == "text-to-image"
    assert "FluxPipeline on cpu in float32 (variant bf16)" in run.output
    image = Image.open(io.BytesIO(base64.b64decode(run.result["images"][0])))
    assert image.size == (64, 48) and run.result["parameters"]["scheduler"] == "FlowMatchEulerDiscreteScheduler"
