"""The deploy tests: what RunPod builds and reads, checked as it will read it."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pypi: asks the package index (PyPI) to resolve the image's dependencies; runs in `make test`"
    )
    config.addinivalue_line("markers", "docker: builds with a local Docker engine; skipped where there is none")
