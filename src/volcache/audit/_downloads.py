"""Where a Dockerfile RUN command downloads files at build time, when that can be told.

Known downloaders: `hf download` / `huggingface-cli download` (`--local-dir`,
`--cache-dir`, else the Hub cache from HF_HUB_CACHE / HF_HOME), `python -c` code that calls
`snapshot_download`, `hf_hub_download`, `from_pretrained`, `SentenceTransformer(` or
`pipeline(` (a literal `cache_dir=`/`local_dir=`/`cache_folder=`, else the Hub cache), a
`python` script whose file name contains "download", `volcache fetch` (VOLCACHE_HOME),
`wget`, `curl -o/-O` and `git clone`. Any other command is not a download as far as the
rules know.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Iterator

from ._dockerfile import Dockerfile, Step
from ._locations import is_model_location
from ._shell import SimpleCommand, Word, option_value

_PYTHON = re.compile(r"python(?:[0-9]+(?:\.[0-9]+)?)?")
_PYTHON_DOWNLOADS = ("snapshot_download", "hf_hub_download", "from_pretrained", "SentenceTransformer(", "pipeline(")
_PYTHON_TARGET = re.compile(r"\b(?:local_dir|cache_dir|cache_folder)\s*=\s*[rf]?([\"'])(.+?)\1")
_GIT_CLONE_VALUE_OPTIONS = frozenset(
    {"--depth", "-b", "--branch", "-o", "--origin", "--reference", "-c", "--config", "--filter", "-j", "--jobs",
     "--template", "--separate-git-dir", "--shallow-since", "--shallow-exclude", "-u", "--upload-pack"}
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Download:
    """A build-time download: the command word, a name for it, and where files land."""

    word: Word
    tool: str
    target: str | None


def downloads(dockerfile: Dockerfile, step: Step) -> Iterator[Download]:
    """The downloads of a RUN step."""
    for command in dockerfile.run_commands(step):
        found = _download(command, step)
        if found is not None:
            yield found


def weight_targets(dockerfile: Dockerfile) -> list[str]:
    """Folders the image fills with weights at build time (downloads, COPY of model files)."""
    targets: list[str] = []
    for step in dockerfile.steps:
        if step.keyword == "RUN":
            targets.extend(d.target for d in downloads(dockerfile, step) if d.target)
        elif step.keyword in ("COPY", "ADD"):
            sources, dest = copy_operands(step)
            if dest is not None and any(is_model_location(step.expand(w.text)) for w in sources):
                targets.append(step.absolute(dest.text))
    return targets


def copy_operands(step: Step) -> tuple[list[Word], Word | None]:
    """The sources and the destination of a COPY or ADD step."""
    instruction = step.instruction
    exec_form = instruction.json_form()
    if exec_form is not None:
        _, at = instruction.flags()
        words = [Word(text, at) for text in exec_form]
    else:
        words = instruction.words()
    if len(words) < 2 or any(w.text.startswith("<<") for w in words):
        return [], None
    return words[:-1], words[-1]


def hub_cache(step: Step, extra: dict[str, str]) -> str:
    """Where `huggingface_hub` caches models with the variables known at `step`."""
    env = {**step.env, **extra}
    if env.get("HF_HUB_CACHE"):
        return step.absolute(env["HF_HUB_CACHE"])
    if env.get("HUGGINGFACE_HUB_CACHE"):
        return step.absolute(env["HUGGINGFACE_HUB_CACHE"])
    if env.get("HF_HOME"):
        return step.absolute(env["HF_HOME"] + "/hub")
    return step.absolute(env.get("XDG_CACHE_HOME", "/root/.cache") + "/huggingface/hub")


def _download(command: SimpleCommand, step: Step) -> Download | None:
    extra = {name: step.expand(value) for name, value in command.assignments}
    program, args, word = command.program, [w.text for w in command.argv], command.argv[0]
    if program in ("hf", "huggingface-cli") and args[1:2] == ["download"]:
        explicit = option_value(command, "--local-dir", "--cache-dir")
        target = step.absolute(explicit.text, extra) if explicit else hub_cache(step, extra)
        return Download(word, f"{program} download", target)
    if _PYTHON.fullmatch(program):
        return _python_download(command, step, extra)
    if program == "volcache" and args[1:2] == ["fetch"]:
        return Download(word, "volcache fetch", _volcache_home(step, extra))
    if program in ("wget", "curl"):
        return _http_download(command, step, extra)
    if program == "git" and args[1:2] == ["clone"]:
        return _git_clone(command, step, extra)
    return None


def _python_download(command: SimpleCommand, step: Step, extra: dict[str, str]) -> Download | None:
    args, word = [w.text for w in command.argv], command.argv[0]
    if "-c" in args[1:-1]:
        code = args[args.index("-c") + 1]
        if not any(marker in code for marker in _PYTHON_DOWNLOADS):
            return None
        literal = _PYTHON_TARGET.search(code)
        target = step.absolute(literal.group(2), extra) if literal else hub_cache(step, extra)
        return Download(word, f"{command.program} -c", target)
    if args[1:3] == ["-m", "volcache"] and args[3:4] == ["fetch"]:
        return Download(word, "volcache fetch", _volcache_home(step, extra))
    script = next((a for a in args[1:] if not a.startswith("-")), "")
    if script.endswith(".py") and "download" in posixpath.basename(script).lower():
        return Download(word, f"{command.program} {posixpath.basename(script)}", hub_cache(step, extra))
    return None


def _volcache_home(step: Step, extra: dict[str, str]) -> str:
    env = {**step.env, **extra}
    if env.get("VOLCACHE_HOME"):
        return step.absolute(env["VOLCACHE_HOME"])
    return step.absolute(env.get("VOLCACHE_VOLUME", "/runpod-volume") + "/models")


def _http_download(command: SimpleCommand, step: Step, extra: dict[str, str]) -> Download | None:
    args, word = [w.text for w in command.argv], command.argv[0]
    if command.program == "wget":
        output = option_value(command, "-O", "--output-document") or option_value(command, "-P", "--directory-prefix")
        target = output.text if output else "."
    else:
        output = option_value(command, "-o", "--output")
        remote_name = any(a in ("-O", "--remote-name", "--remote-name-all") for a in args)
        target = output.text if output else ("." if remote_name else "-")
    if target == "-":
        return None  # to stdout: nothing lands on disk by this command
    return Download(word, command.program, step.absolute(target, extra))


def _git_clone(command: SimpleCommand, step: Step, extra: dict[str, str]) -> Download | None:
    operands: list[str] = []
    skip = False
    for word in command.argv[2:]:
        if skip:
            skip = False
        elif word.text.startswith("-"):
            skip = word.text in _GIT_CLONE_VALUE_OPTIONS
        else:
            operands.append(word.text)
    if not operands:
        return None
    folder = operands[1] if len(operands) > 1 else posixpath.basename(operands[0].rstrip("/")).removesuffix(".git")
    return Download(command.argv[0], "git clone", step.absolute(folder, extra))
