"""Fixtures of tests/store: the Hub emulator serving tiny repos in the layouts real repos ship."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from volcache.testing import HubEmulator, mirror_root_with
from volcache.testing import models as tiny

LAYOUT_BUILDERS: dict[str, Callable[..., Path]] = {
    "org/sharded": tiny.build_tiny_sharded_lm,
    "org/original": tiny.build_tiny_lm_with_original,
    "org/st-exports": tiny.build_tiny_st_with_exports,
    "org/tiny-sd": tiny.build_tiny_diffusers_repo,
    "org/tiny-gguf": tiny.build_tiny_gguf_repo,
}


@pytest.fixture(scope="session")
def layout_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each layout built once per test session (about 20 s on 2 cores)."""
    built = tmp_path_factory.mktemp("layouts")
    return {repo: build(built / repo.replace("/", "--")) for repo, build in LAYOUT_BUILDERS.items()}


@pytest.fixture
def layouts_hub(layout_folders: dict[str, Path], tmp_path: Path) -> Iterator[HubEmulator]:
    with HubEmulator(mirror_root_with(tmp_path, layout_folders)) as hub:
        yield hub
