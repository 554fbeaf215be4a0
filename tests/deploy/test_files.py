"""The files RunPod builds from are regular files where RunPod reads them.

The Hub and GitHub deploys build the root `Dockerfile` (a `.runpod/Dockerfile` would take
precedence) with the repository root as context. BuildKit reads a Dockerfile from its own folder
and does not follow a symlink out of it (moby/buildkit#343): a linked Dockerfile fails with
`failed to read dockerfile: open ...: no such file or directory`. So no Dockerfile anywhere in
the repository (the image variants included) may be a symlink, and neither may the Hub's files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.conftest import REPO_ROOT

# Not the repository's own files: environments, caches, build output, the local demo volume.
SKIPPED_DIRS = re.compile(r"^(\.git|\.venv.*|node_modules|__pycache__|\..*_cache|build|dist|demo-volume|.*\.egg-info)$")
DOCKERFILE_NAME = re.compile(r"^(dockerfile.*|.*\.dockerfile|containerfile.*)$", re.IGNORECASE)
HUB_FILES = (".runpod/hub.json", ".runpod/tests.json", ".runpod/README.md", "handler.py", "README.md")


def dockerfiles(root: Path) -> list[Path]:
    """Every Dockerfile under `root` (`**/Dockerfile*`, `*.Dockerfile`, `Containerfile*`), links included."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if not SKIPPED_DIRS.match(d)]
        names = files + [d for d in dirs if (Path(folder) / d).is_symlink()]  # a link to a folder is listed there
        found += [Path(folder) / n for n in names if DOCKERFILE_NAME.match(n) and not n.endswith(".dockerignore")]
    return sorted(found)


def linked(paths: list[Path]) -> list[str]:
    return [f"{p} -> {os.readlink(p)}" for p in paths if p.is_symlink()]


def test_no_dockerfile_in_the_repository_is_a_symlink() -> None:
    found = dockerfiles(REPO_ROOT)
    assert REPO_ROOT / "Dockerfile" in found
    assert not linked(found), f"Dockerfiles that are symlinks (BuildKit cannot read them): {linked(found)}"
    assert all(p.is_file() for p in found)


def test_the_check_finds_a_linked_dockerfile_at_any_depth(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".runpod").mkdir()
    (tmp_path / ".runpod/Dockerfile").symlink_to("../Dockerfile")
    (tmp_path / "Dockerfile.vllm").symlink_to("Dockerfile")
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker/gpu.Dockerfile").symlink_to("../Dockerfile")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv/Dockerfile").symlink_to("../Dockerfile")  # not the repository's
    assert [p.relative_to(tmp_path).as_posix() for p in dockerfiles(tmp_path) if p.is_symlink()] == [
        ".runpod/Dockerfile",
        "Dockerfile.vllm",
        "docker/gpu.Dockerfile",
    ]


def test_the_hub_reads_the_root_dockerfile_and_regular_files() -> None:
    runpod_dockerfile = REPO_ROOT / ".runpod/Dockerfile"
    # .runpod/ takes precedence over the root for the Hub: a second copy there would drift.
    assert not runpod_dockerfile.exists() and not runpod_dockerfile.is_symlink()
    for name in HUB_FILES:
        path = REPO_ROOT / name
        assert path.is_file() and not path.is_symlink(), name


def test_every_dockerfile_is_audited_by_make_test() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    audit = re.search(r"^audit:.*\n\t(.*)$", makefile, re.MULTILINE)
    assert audit, "the Makefile has no audit target"
    assert "volcache audit src $(wildcard Dockerfile Dockerfile.*)" in audit.group(1)


def test_no_reference_to_the_old_dockerfile_name_is_left() -> None:
    for name in ("README.md", "Makefile", ".dockerignore", "Dockerfile", ".runpod/README.md"):
        assert "Dockerfile.runpod" not in (REPO_ROOT / name).read_text(encoding="utf-8"), name


def test_the_build_context_keeps_what_the_dockerfile_copies() -> None:
    ignored = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for copied in ("pyproject.toml", "README.md", "constraints.txt", "src", "handler.py", "test_input.json"):
        assert copied not in ignored and not any(Path(copied).match(p) for p in ignored), copied
    assert ".venv*" in ignored  # the vLLM environment too
