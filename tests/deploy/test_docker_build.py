"""A real BuildKit build of the root Dockerfile, as far as it can go without a registry.

BuildKit is what RunPod builds with (the bake step's `RUN --mount=type=secret` needs it). The
base image cannot be pulled offline, so the build runs on a stand-in base: an empty image made
with `docker import`. BuildKit then reads the Dockerfile, parses every instruction, transfers
the context through `.dockerignore` and runs each `COPY`; the first `RUN` fails because the
stand-in has no shell, and that is where this check ends. Skipped with the reason where no
Docker engine with BuildKit answers (CI machines have none).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import REPO_ROOT
from tests.deploy._image import DOCKERFILE, parse


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def buildkit_command() -> list[str] | None:
    """`docker buildx build --load`, or the classic client's built-in BuildKit (Docker < 23)."""
    candidates = dict.fromkeys(p for p in (shutil.which("docker"), "/usr/bin/docker") if p and os.path.exists(p))
    for docker in candidates:
        if _run([docker, "info", "--format", "{{.ServerVersion}}"]).returncode != 0:
            continue
        if _run([docker, "buildx", "version"]).returncode == 0:
            return [docker, "buildx", "build", "--load"]
        client = _run([docker, "version", "--format", "{{.Client.Version}}"]).stdout.strip()
        if re.match(r"^(1\d|2[0-2])\.", client):
            return [docker, "build"]
    return None


@pytest.fixture(scope="module")
def build() -> list[str]:
    command = buildkit_command()
    if command is None:
        pytest.skip("no Docker engine with a BuildKit client answers here (install docker.io and start dockerd)")
    return command


@pytest.fixture(scope="module")
def standin(build: list[str]) -> Iterator[str]:
    """An empty local image to stand in for the CUDA base image, removed afterwards."""
    docker = build[0]
    tag = f"volcache-test-standin:{uuid.uuid4().hex[:12]}"
    empty = io.BytesIO()
    tarfile.open(fileobj=empty, mode="w").close()
    made = subprocess.run([docker, "import", "-", tag], input=empty.getvalue(), capture_output=True, timeout=120)
    assert made.returncode == 0, made.stderr.decode(errors="replace")
    yield tag
    _run([docker, "image", "rm", "--force", tag])


@pytest.mark.docker
@pytest.mark.timeout(300)
def test_buildkit_reads_the_dockerfile_and_copies_the_whole_context(build: list[str], standin: str) -> None:
    command = [*build, "--platform", "linux/amd64", "--progress", "plain", "--no-cache"]
    command += ["--build-arg", f"BASE_IMAGE={standin}", "--file", str(DOCKERFILE), str(REPO_ROOT)]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=280, env={**os.environ, "DOCKER_BUILDKIT": "1"}
    )
    log = proc.stdout + proc.stderr
    assert "failed to read dockerfile" not in log, log
    steps = parse(DOCKERFILE.read_text(encoding="utf-8"))
    first_run = next(i for i, (kind, _) in enumerate(steps) if kind == "RUN")
    copies = [args for kind, args in steps[:first_run] if kind == "COPY"]
    assert copies, "no COPY before the first RUN: this check would prove nothing"
    for args in copies:  # every COPY before the first RUN ran, from the context as sent
        step = re.search(rf"^#(\d+) \[\s*\d+/\d+\] COPY {re.escape(args)}\s*$", log, re.MULTILINE)
        assert step, f"COPY {args} did not run:\n{log}"
        assert re.search(rf"^#{step.group(1)} DONE", log, re.MULTILINE), f"COPY {args} failed:\n{log}"
    # The build stops at the first RUN, which needs the real base image's shell and pip.
    run_head = steps[first_run][1][:40]
    assert proc.returncode != 0 and re.search(rf"\] RUN {re.escape(run_head)}", log), log
    assert "not found" not in log.split(f"RUN {run_head}")[0], log  # no COPY source was missing
