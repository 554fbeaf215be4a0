"""Fixtures for the image tests: tiny random diffusers pipelines, built once per session in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

_BUILD = """
import sys
from pathlib import Path
from volcache.testing.models import build_tiny_flux_pipeline, build_tiny_sd_pipeline
base = Path(sys.argv[1])
build_tiny_sd_pipeline(base / "sd", variant_fp16=True)
build_tiny_sd_pipeline(base / "sdxl", variant_fp16=True, sdxl=True)
build_tiny_flux_pipeline(base / "flux", variant_bf16=True)
"""


@pytest.fixture(scope="session")
def tiny_pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stable Diffusion-, SDXL- (fp32 and real fp16 variants) and FLUX-style (fp32 and bf16) pipelines.

    Built in a subprocess so torch and diffusers stay out of the test process (in-process `pin()`
    tests need huggingface_hub unimported).
    """
    base = tmp_path_factory.mktemp("tiny-pipelines")
    env = subprocess_env(base / "unused-volume", HOME=str(base / "home"), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD, str(base)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {name: base / name for name in ("sd", "sdxl", "flux")}
