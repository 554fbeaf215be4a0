"""The root Dockerfile (the one RunPod builds) and the RunPod Hub files, checked without Docker.

The Dockerfile is parsed into instructions (continuations joined, comments dropped) and the
build is walked with its default arguments: the cache variables end on the volume, no step
writes under /runpod-volume (the mount point hides whatever an image puts there), and no step
downloads weights unless BAKE_MODEL asks for it, and then only outside the mount point.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, make_settings
from tests.deploy._image import DOCKERFILE, env_pairs, expand, final_env, parse
from volcache import Settings
from volcache.worker import EmbeddingsTask, Limits, Worker

MOUNT = "/runpod-volume"
DOWNLOADS = re.compile(
    r"volcache\s+fetch|hf\s+download|huggingface-cli\s+download|snapshot_download|hf_hub_download"
    r"|from_pretrained|SentenceTransformer\(|\bwget\b|\bcurl\b|git\s+clone|git\s+lfs"
)


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def test_it_parses_and_starts_from_a_cuda_pytorch_image(steps: list[tuple[str, str]]) -> None:
    kinds = [kind for kind, _ in steps]
    assert kinds[0] in ("ARG", "FROM") and "FROM" in kinds
    args = {k: v for kind, a in steps if kind == "ARG" for k, _, v in [a.partition("=")]}
    image = expand(next(a for kind, a in steps if kind == "FROM"), args)
    assert "pytorch" in image and "cuda" in image
    assert steps[-1] == ("CMD", '["python", "-u", "handler.py"]')


def test_volcache_is_installed_with_its_worker_extra(steps: list[tuple[str, str]]) -> None:
    assert any(kind == "RUN" and re.search(r"pip install .*\.\[worker\]", a) for kind, a in steps)
    for kind, args in steps:
        if kind == "COPY":
            for source in shlex.split(args)[:-1]:
                assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_the_cache_variables_end_on_the_volume(steps: list[tuple[str, str]]) -> None:
    env: dict[str, str] = {}
    for kind, args in steps:
        if kind == "ENV":
            env.update(env_pairs(args))
    assert env["HF_HOME"] == f"{MOUNT}/models"
    assert env["HF_HUB_CACHE"] == f"{MOUNT}/models/hub"
    assert env["TORCH_HOME"] == f"{MOUNT}/models/torch"
    assert env["VOLCACHE_VOLUME"] == MOUNT
    assert env["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert not env["HF_XET_CACHE"].startswith(MOUNT)  # Xet scratch belongs on the ephemeral disk
    settings = make_settings(Path(MOUNT), VOLCACHE_VOLUME=MOUNT)
    assert str(settings.home) == env["HF_HOME"] and str(settings.hub_cache) == env["HF_HUB_CACHE"]


def test_nothing_is_written_under_the_mount_point_at_build(steps: list[tuple[str, str]]) -> None:
    for kind, args in steps:
        if kind in ("RUN", "COPY", "ADD", "WORKDIR", "VOLUME"):
            assert MOUNT not in args, f"{kind} {args}"


def test_no_weights_are_downloaded_at_build_unless_baked_outside_the_mount(steps: list[tuple[str, str]]) -> None:
    env: dict[str, str] = {}
    downloading = []
    for kind, args in steps:
        if kind == "ENV":
            env.update(env_pairs(args))
        if kind == "RUN" and DOWNLOADS.search(args):
            downloading.append(args)
            # Only when asked for, with the default (empty) BAKE_MODEL nothing runs ...
            assert re.search(r'if \[ -n "\$BAKE_MODEL" \]', args), args
            # ... and then into a cache outside the mount point, whatever the ENV says.
            home = re.search(r"VOLCACHE_HOME=(\S+)", args)
            assert home is not None and not home.group(1).startswith(MOUNT), args
            assert not env.get("HF_HOME", "").startswith(MOUNT), "HF_HOME points at the volume during the bake"
    assert len(downloading) == 1
    final = {k: v for kind, a in steps if kind == "ENV" for k, v in env_pairs(a).items()}
    assert "/opt/models/hub" in final["VOLCACHE_EXTRA_CACHES"].split(",")  # the baked model is used in place


def fake_worker(tmp_path: Path) -> Worker:
    class Model:
        def get_embedding_dimension(self) -> int:
            return 384

    settings = make_settings(tmp_path / "volume")
    return Worker(EmbeddingsTask(Model(), Limits.from_settings(settings)), settings)


def test_a_baked_model_is_served_at_the_revision_it_was_baked(steps: list[tuple[str, str]]) -> None:
    baked = final_env(steps, {"BAKE_MODEL": "org/name", "BAKE_REVISION": "0123abcd" * 5})
    settings = Settings.from_env(env=baked)
    assert (settings.model, settings.revision) == ("org/name", "0123abcd" * 5)
    plain = Settings.from_env(env=final_env(steps))  # no bake: the defaults, not an empty model name
    assert (plain.model, plain.revision) == (Settings().model, "main")


def test_the_hub_test_jobs_are_valid_jobs(tmp_path: Path) -> None:
    tests = json.loads((REPO_ROOT / ".runpod/tests.json").read_text(encoding="utf-8"))
    assert tests["config"]["gpuCount"] >= 1 and tests["tests"]
    worker = fake_worker(tmp_path)
    inputs: list[Any] = [t["input"] for t in tests["tests"]]
    inputs.append(json.loads((REPO_ROOT / "test_input.json").read_text(encoding="utf-8"))["input"])
    for job_input in inputs:
        worker.decode(job_input)  # each test job is valid for the default (embeddings) worker
    assert all(t["timeout"] > 0 and t["name"] for t in tests["tests"])
