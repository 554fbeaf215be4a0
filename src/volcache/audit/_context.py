"""A Dockerfile's build context: which of its files the image holds, and which it runs.

`COPY builder/fetch.py /fetch.py` then `RUN python /fetch.py` runs a file of the build
context at build time; `COPY start.sh /start.sh` then `CMD ["/start.sh"]` runs one at every
start. The rules read those files as what they are (Python, or a shell script with the
image's variables), and whether any of them names the volume's mount point tells whether
the image is meant to use a volume. Only files under the context folder are read.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import posixpath
from collections.abc import Iterator
from pathlib import Path

from ._dockerfile import Dockerfile, Step, copy_operands
from ._files import SKIP_DIRS, Kind, file_kind
from ._locations import is_under
from ._shell import PYTHON_PROGRAM, SHELLS, SimpleCommand, split_commands

_MAX_SCANNED = 200  # files of a `COPY . /app` read to learn whether the worker uses a volume
_MAX_FOLDERS = 500  # folders of the context walked for that
_MAX_BYTES = 1_000_000


@dataclasses.dataclass(frozen=True)
class ContextFile:
    """A file of the build context the image holds: where it is and how findings name it."""

    path: Path
    display: str
    kind: Kind


@dataclasses.dataclass(frozen=True)
class RunScript:
    """A context file the image runs at `step` (a RUN at build time, ENTRYPOINT/CMD at start)."""

    file: ContextFile
    step: Step
    at_start: bool
    dockerfile: Dockerfile


def context_file(dockerfile: Dockerfile, step: Step, image_path: str) -> ContextFile | None:
    """The build context file that the latest COPY/ADD before `step` put at `image_path`."""
    context = dockerfile.context
    if context is None or not image_path.startswith("/"):
        return None
    # `step` may be a copy with another working folder (after a `cd`): find it by its instruction
    index = next((i for i, s in enumerate(dockerfile.steps) if s.instruction is step.instruction), 0)
    for earlier in reversed(dockerfile.steps[:index]):
        if earlier.keyword not in ("COPY", "ADD") or earlier.stage != step.stage:
            continue
        if "from" in earlier.instruction.flags()[0]:
            continue  # from another stage or image, not the context
        found = _copied_to(dockerfile, earlier, image_path)
        if found is not None:
            return found
    return None


def _copied_to(dockerfile: Dockerfile, step: Step, image_path: str) -> ContextFile | None:
    assert dockerfile.context is not None
    sources, dest = copy_operands(step)
    if dest is None:
        return None
    dest_path = step.absolute(dest.text)
    into_folder = dest.text.endswith("/") or len(sources) > 1 or dest.text in (".", "./")
    for source in sources:
        text = step.expand(source.text)
        if "://" in text or "$" in text:
            continue
        local = _inside(dockerfile.context, text)
        if local is None:
            continue
        if any(c in text for c in "*?["):
            name = posixpath.basename(image_path)
            if posixpath.dirname(image_path) == dest_path.rstrip("/") and fnmatch.fnmatchcase(name, local.name):
                return _describe(dockerfile, local.parent / name)
        elif local.is_dir():
            if is_under(image_path, dest_path) and image_path != dest_path:
                return _describe(dockerfile, local / posixpath.relpath(image_path, dest_path))
        else:
            target = posixpath.join(dest_path, local.name) if into_folder else dest_path
            if target == image_path:
                return _describe(dockerfile, local)
    return None


def _inside(context: Path, relative: str) -> Path | None:
    """`relative` under `context`, or None when it leaves it (`../secret`)."""
    root = context.resolve()
    candidate = (root / relative.lstrip("/")).resolve()
    return candidate if candidate == root or root in candidate.parents else None


def _describe(dockerfile: Dockerfile, local: Path) -> ContextFile | None:
    assert dockerfile.context is not None
    if not local.is_file():
        return None
    kind = file_kind(local) or _shebang_kind(local)
    if kind is None or kind == "dockerfile":
        return None
    relative = local.resolve().relative_to(dockerfile.context.resolve()).as_posix()
    folder = posixpath.dirname(dockerfile.path)
    return ContextFile(local, posixpath.join(folder, relative) if folder else relative, kind)


def _shebang_kind(path: Path) -> Kind | None:
    try:
        with path.open("rb") as handle:
            first = handle.readline(200)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    interpreter = first.decode("utf-8", "replace").split("/")[-1]
    if "python" in interpreter:
        return "python"
    return "shell" if any(interpreter.split()[-1:] == [s] or interpreter.startswith(s) for s in SHELLS) else None


def scripts_run(dockerfile: Dockerfile) -> Iterator[RunScript]:
    """The context files the image runs: by RUN at build time, by ENTRYPOINT/CMD at start."""
    if dockerfile.context is None or dockerfile.is_script:
        return
    seen: set[Path] = set()
    for step in dockerfile.steps:
        if step.keyword not in ("RUN", "ENTRYPOINT", "CMD"):
            continue
        for command, here in _commands(dockerfile, step):
            for word in script_words(command):
                found = context_file(dockerfile, here, here.absolute(word))
                if found is not None and found.path.resolve() not in seen:
                    seen.add(found.path.resolve())
                    yield RunScript(found, step, step.keyword != "RUN", dockerfile)


def _commands(dockerfile: Dockerfile, step: Step) -> list[tuple[SimpleCommand, Step]]:
    if step.keyword == "RUN":
        return list(dockerfile.commands_in_place(step))
    return [(c, step) for c in dockerfile.run_commands(step)]


def script_words(command: SimpleCommand) -> list[str]:
    """The words of a command that may name a script: the program, or the first operand of
    a shell or Python interpreter."""
    words = [w.text for w in command.argv]
    if not words:
        return []
    program = command.program
    if program in SHELLS or PYTHON_PROGRAM.fullmatch(program):
        if "-c" in words[1:]:
            index = words.index("-c")
            code = words[index + 1] if index + 1 < len(words) else ""
            return [w for c in split_commands(code) for w in script_words(c)]
        operands = [w for w in words[1:] if not w.startswith("-")]
        return operands[:1] if "-m" not in words[1:] else []
    return [words[0]] if "/" in words[0] or words[0].endswith((".sh", ".py")) else []


def copied_texts(dockerfile: Dockerfile) -> Iterator[str]:
    """The text of the Python files and scripts the image copies from the context (at most
    a few hundred, each at most 1 MB), for facts no instruction states."""
    context = dockerfile.context
    if context is None:
        return
    budget = _MAX_SCANNED
    for step in dockerfile.steps:
        if step.keyword not in ("COPY", "ADD") or "from" in step.instruction.flags()[0]:
            continue
        for source in copy_operands(step)[0]:
            local = _inside(context, step.expand(source.text))
            for path in _files_under(local) if local is not None else ():
                if budget <= 0:
                    return
                budget -= 1
                try:
                    if path.stat().st_size <= _MAX_BYTES:
                        yield path.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue


def _files_under(path: Path) -> Iterator[Path]:
    if path.is_file():
        if file_kind(path) in ("python", "shell"):
            yield path
        return
    if not path.is_dir():
        return
    for visited, (folder, dirnames, filenames) in enumerate(os.walk(path)):
        if visited >= _MAX_FOLDERS:
            return
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            candidate = Path(folder) / name
            if file_kind(candidate) in ("python", "shell"):
                yield candidate


def is_volume_worker(dockerfile: Dockerfile) -> bool:
    """Whether the image is a worker meant to use a network volume: it declares a VOLUME,
    an instruction names a mount point, or a file it copies from the build context (its
    handler, its start script) does. A RunPod base image or `pip install runpod` alone
    says nothing: many RunPod workers bake their models and use no volume."""
    if dockerfile.mentions_mount_point():
        return True
    return any(m in text for text in copied_texts(dockerfile) for m in dockerfile.mount_points)
