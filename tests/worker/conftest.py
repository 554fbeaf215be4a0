"""Fixtures for the worker tests: tiny random models, built once per session in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

_BUILD = """
import sys
from pathlib import Path
from volcache.testing.models import build_tiny_causal_lm, build_tiny_sentence_transformer, build_tiny_text_classifier
base = Path(sys.argv[1])
build_tiny_causal_lm(base / "lm")
build_tiny_text_classifier(base / "classifier")
build_tiny_sentence_transformer(base / "sentence-transformer")
"""


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of a tiny Llama with a chat template, a tiny sentiment classifier and a tiny embedder.

    Built in a subprocess so torch and transformers stay out of the test process (and its
    huggingface_hub import out of the way of in-process `pin()` tests).
    """
    base = tmp_path_factory.mktemp("tiny-models")
    env = subprocess_env(base / "unused-volume", HOME=str(base / "home"), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD, str(base)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {name: base / name for name in ("lm", "classifier", "sentence-transformer")}
