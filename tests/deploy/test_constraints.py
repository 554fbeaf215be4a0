"""The image installs pinned versions, and torch stays the base image's CUDA build.

Without pins, `pip install ".[worker]"` on the base image takes whatever is newest on the day of
the build, and the first dependency that raises its torch floor makes pip replace the base's
torch with another multi-GB build that may need a newer driver than `allowedCudaVersions`
promises. The Dockerfile installs with `-c constraints.txt` and a second constraints file that
holds the base's torch; the test below asks pip to resolve exactly that for the image's platform.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.deploy._image import (
    BASE_PACKAGES,
    CONSTRAINTS,
    DOCKERFILE,
    EXTRA_PINNED,
    BaseImage,
    image_requirements,
    read_constraints,
    resolve,
    torch_constraint,
    worker_requirements,
)


def test_every_requested_package_is_pinned_and_the_base_packages_are_not() -> None:
    pins = read_constraints()
    requested = {canonicalize_name(r.name) for r in worker_requirements()} | set(EXTRA_PINNED)
    unpinned = sorted(requested - set(pins) - {"torch"})
    assert not unpinned, f"constraints.txt does not pin {unpinned}; rewrite it: python -m tests.deploy._image"
    held = sorted(name for name in pins if BASE_PACKAGES.match(name))
    assert not held, f"constraints.txt pins {held}, which the base image provides (the Dockerfile holds them)"
    for requirement in worker_requirements():
        name = canonicalize_name(requirement.name)
        if name in pins:
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {requirement}"
            )


def test_the_dockerfile_installs_with_the_constraints_and_holds_the_base_torch() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    run = next(line for line in text.split("\nRUN ")[1:] if "pip install" in line)
    assert re.search(r"pip list --format=freeze \| grep -iE '\^\(torch\|torchvision\|torchaudio\)==' > (\S+)", run)
    assert re.search(r'pip install -c constraints\.txt -c /tmp/base-torch\.txt "\.\[worker\]"', run), run
    assert re.search(r"^COPY [^\n]*\bconstraints\.txt\b", text, re.MULTILINE), "constraints.txt is not copied in"
    # `pip list --format=freeze` prints name==version, the local label (+cu126) included, so the
    # hold is the base's exact build; `grep -q '^torch=='` fails the build where there is none.
    assert "grep -iq '^torch==' /tmp/base-torch.txt" in run


@pytest.mark.pypi
@pytest.mark.timeout(300)
def test_the_constraints_resolve_with_the_worker_extra_on_the_base_torch(tmp_path: Path) -> None:
    base = BaseImage.from_dockerfile()
    result = resolve(image_requirements(), [CONSTRAINTS, torch_constraint(base, tmp_path)])
    if result.unreachable and os.environ.get("CI") != "true":
        pytest.skip(f"the package index cannot be reached from here: {result.output.splitlines()[-1]}")
    assert result.returncode == 0, f"pip cannot resolve the image's requirements:\n{result.output}"
    assert result.installs["torch"] == base.torch
    pins = read_constraints()
    unpinned = sorted(n for n in result.installs if n not in pins and not BASE_PACKAGES.match(n))
    assert not unpinned, f"the image would install unpinned {unpinned}; rewrite: python -m tests.deploy._image"
    for name, version in pins.items():
        if name in result.installs:
            assert result.installs[name] == version, name
