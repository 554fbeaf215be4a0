"""Dockerfile.vllm, checked without Docker as tests/worker checks the root Dockerfile: on vLLM's image,
the caches on the volume, nothing written under the mount point, the worker (not `vllm serve`) as the command."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT
from tests.deploy._image import env_pairs, parse
from tests.worker.test_dockerfile import DOWNLOADS, MOUNT

DOCKERFILE = REPO_ROOT / "Dockerfile.vllm"


def _steps() -> list[tuple[str, str]]:
    assert DOCKERFILE.is_file() and not DOCKERFILE.is_symlink()
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def test_it_starts_from_vllms_cuda_image_and_runs_the_worker() -> None:
    steps = _steps()
    assert next(args for kind, args in steps if kind == "FROM") == "vllm/vllm-openai:${VLLM_VERSION}"
    assert ("ENTRYPOINT", "[]") in steps  # the image's own entrypoint is `vllm serve`
    assert steps[-1] == ("CMD", '["python3", "-u", "handler.py"]')


def test_the_worker_extra_is_installed_without_replacing_the_images_engine() -> None:
    install = next(args for kind, args in _steps() if kind == "RUN" and "pip install" in args)
    assert re.search(r"pip install -c \S+ \"\.\[worker\]\"", install)
    for package in ("vllm", "torch", "transformers"):
        assert package in install.split("grep", 1)[1]  # pinned from the image's own `pip freeze`


def test_the_caches_are_on_the_volume_and_nothing_is_written_under_it_at_build() -> None:
    steps = _steps()
    env: dict[str, str] = {}
    for kind, args in steps:
        if kind == "ENV":
            env.update(env_pairs(args))
        if kind in ("RUN", "COPY", "ADD", "WORKDIR"):
            assert MOUNT not in args, f"{kind} {args}"
        if kind == "RUN" and DOWNLOADS.search(args):
            assert "BAKE_MODEL" in args and "VOLCACHE_HOME=/opt/models" in args
    assert env["HF_HOME"] == f"{MOUNT}/models" and env["HF_HUB_CACHE"] == f"{MOUNT}/models/hub"
    assert env["VOLCACHE_VOLUME"] == MOUNT
    assert not any(k in env for k in ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"))
