"""What the deploy tests know about the image: its base, its pins, and how pip resolves them.

The image is built from the root `Dockerfile` on `BASE_IMAGE`, a CUDA build of PyTorch whose
torch stays as it is; every other package is pinned by `constraints.txt`. Run this module to
rewrite `constraints.txt` from a fresh resolution for the image's platform (it asks PyPI):

    .venv/bin/python -m tests.deploy._image
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DOCKERFILE = REPO_ROOT / "Dockerfile"
CONSTRAINTS = REPO_ROOT / "constraints.txt"
# The Python of the pytorch/pytorch images (their conda environment); pip resolves for it.
BASE_PYTHON = "3.11"
# Installed by the base image with torch, held there, never pinned by constraints.txt.
BASE_PACKAGES = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*)$")
# Engines the worker extra does not list yet, but whose version the image must pin (images issue).
EXTRA_PINNED = ("diffusers", "pillow")
# Answers of pip that mean the index could not be reached, as opposed to a resolution that failed.
UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution"
    r"|Name or service not known|ConnectTimeout|Network is unreachable"
)
_LINUX_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(35, 16, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
]


INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip


def parse(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; raises on an unknown instruction."""
    steps: list[tuple[str, str]] = []
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if logical and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        logical += " " + stripped
        if logical.endswith("\\"):
            logical = logical[:-1]
            continue
        keyword, _, args = logical.strip().partition(" ")
        if keyword.upper() not in INSTRUCTIONS:
            raise AssertionError(f"unknown Dockerfile instruction {keyword!r}")
        steps.append((keyword.upper(), args.strip()))
        logical = ""
    assert not logical, "the Dockerfile ends inside a continued instruction"
    return steps


def env_pairs(args: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(args))


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), ""), value)


def final_env(steps: list[tuple[str, str]], build_args: dict[str, str] | None = None) -> dict[str, str]:
    """The image's environment at run time: the ARG defaults, or `--build-arg` values, expanded."""
    args: dict[str, str] = {}
    env: dict[str, str] = {}
    for kind, text in steps:
        if kind == "ARG":
            name, _, default = text.partition("=")
            args[name] = (build_args or {}).get(name, shlex.split(default)[0] if default.strip() else "")
        elif kind == "ENV":
            env.update({k: expand(v, {**args, **env}) for k, v in env_pairs(text).items()})
    return env


@dataclasses.dataclass(frozen=True)
class BaseImage:
    """The default `BASE_IMAGE` of the Dockerfile, e.g. pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime."""

    reference: str
    torch: str
    cuda: tuple[int, int]

    @classmethod
    def from_dockerfile(cls, path: Path = DOCKERFILE) -> BaseImage:
        match = re.search(r"^ARG BASE_IMAGE=(\S+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
        assert match, f"{path.name}: no `ARG BASE_IMAGE=...` line"
        reference = match.group(1)
        tag = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda(\d+)\.(\d+)-cudnn\d+-runtime", reference)
        assert tag, f"BASE_IMAGE={reference}: expected pytorch/pytorch:<torch>-cuda<X.Y>-cudnn<N>-runtime"
        return cls(reference, tag.group(1), (int(tag.group(2)), int(tag.group(3))))


def read_constraints(path: Path = CONSTRAINTS) -> dict[str, str]:
    """{canonical name: version} of the `name==version` lines; anything else is an error."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)", line)
        assert match, f"{path.name}:{number}: {raw!r} is not a `name==version` pin"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{path.name}:{number}: {name} is pinned twice"
        pins[name] = match.group(2)
    return pins


def worker_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[Requirement]:
    """What `pip install ".[worker]"` asks for: the project's dependencies and its worker extra."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["worker"]]]


@dataclasses.dataclass(frozen=True)
class Resolution:
    """pip's answer to a dry run: the packages it would install, or why it could not."""

    returncode: int
    installs: dict[str, str]
    output: str

    @property
    def unreachable(self) -> bool:
        return self.returncode != 0 and UNREACHABLE.search(self.output) is not None


def resolve(requirements: list[str], constraints: list[Path], timeout: float = 280) -> Resolution:
    """`pip install --dry-run` for the image's platform and Python, from nothing installed.

    Wheels only (`--only-binary`) because pip cannot run another platform's builds; metadata
    comes from the index without downloading the wheels where it serves it separately.
    """
    with tempfile.TemporaryDirectory(prefix="volcache-resolve-") as scratch:
        report = Path(scratch) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        command += ["--report", str(report), "--python-version", BASE_PYTHON, "--implementation", "cp"]
        command += ["--only-binary=:all:", *(arg for p in _LINUX_PLATFORMS for arg in ("--platform", p))]
        command += [arg for c in constraints for arg in ("-c", str(c))]
        proc = subprocess.run([*command, *requirements], capture_output=True, text=True, timeout=timeout)
        installs: dict[str, str] = {}
        if proc.returncode == 0:
            for item in json.loads(report.read_text(encoding="utf-8"))["install"]:
                installs[canonicalize_name(item["metadata"]["name"])] = item["metadata"]["version"]
    output = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines() if "is ignored" not in line)
    return Resolution(proc.returncode, installs, output)


def image_requirements() -> list[str]:
    """The worker extra plus the engines the image pins beyond it (see EXTRA_PINNED)."""
    requested = [str(r) for r in worker_requirements()]
    named = {canonicalize_name(Requirement(r).name) for r in requested}
    return requested + [name for name in EXTRA_PINNED if name not in named]


def torch_constraint(base: BaseImage, scratch: Path) -> Path:
    """A constraints file holding torch at the base image's version, as the Dockerfile's RUN does."""
    path = scratch / "base-torch.txt"
    path.write_text(f"torch=={base.torch}\n", encoding="utf-8")
    return path


def write_constraints() -> None:
    """Resolve the image's requirements afresh and write every version except the base's packages."""
    base = BaseImage.from_dockerfile()
    with tempfile.TemporaryDirectory(prefix="volcache-lock-") as scratch:
        result = resolve(image_requirements(), [torch_constraint(base, Path(scratch))], timeout=900)
    if result.returncode != 0:
        raise SystemExit(result.output)
    pins = sorted((n, v) for n, v in result.installs.items() if not BASE_PACKAGES.match(n))
    header = [
        "# The versions the worker image installs (the root Dockerfile: pip install -c constraints.txt).",
        f"# Resolved for {base.reference} (Python {BASE_PYTHON}, linux/amd64) with torch held at the",
        f"# base image's {base.torch}; torch, torchvision, torchaudio, triton and nvidia-* are the base image's",
        "# and not listed. Rewrite with: .venv/bin/python -m tests.deploy._image",
        "# tests/deploy/test_constraints.py checks that these resolve with the worker extra.",
    ]
    CONSTRAINTS.write_text("\n".join([*header, *(f"{n}=={v}" for n, v in pins)]) + "\n", encoding="utf-8")
    print(f"wrote {CONSTRAINTS.name}: {len(pins)} pins for torch {base.torch}")


if __name__ == "__main__":
    write_constraints()
