"""Where a Dockerfile RUN command downloads files at build time, when that can be told.

Known downloaders: the `download` verb of any model command line (`hf download`,
`huggingface-cli download`, `text-generation-server download-weights`, ...: `--local-dir`,
`--cache-dir`, `--download-dir`, else the Hub cache from HF_HUB_CACHE / HF_HOME); Python
run by `python -c` or as a script from the build context (`COPY fetch.py /fetch.py` then
`RUN python /fetch.py`), read with the Python resolver: `snapshot_download`,
`hf_hub_download` (`local_dir=`, `cache_dir=`), `from_pretrained` of a repo id,
`SentenceTransformer(...)` and `pipeline(...)` (`cache_dir=`/`cache_folder=`), else the Hub
cache; a `python` script outside the context whose file name contains "download";
`volcache fetch` (VOLCACHE_HOME), `wget`, `curl -o/-O` and `git clone`. Any other command
is not a download as far as the rules know.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Iterator
from typing import Literal

from ._context import ContextFile, context_file, script_words
from ._dockerfile import Dockerfile, Step, copy_operands
from ._embedded import embedded_module, script_module
from ._locations import UNKNOWN, is_model_location
from ._python import PythonModule, keyword_value
from ._shell import PYTHON_PROGRAM, SimpleCommand, Word, option_value

_PYTHON_DOWNLOADS = ("snapshot_download", "hf_hub_download", "from_pretrained", "SentenceTransformer(", "pipeline(")
_PYTHON_TARGET = re.compile(r"\b(?:local_dir|cache_dir|cache_folder)\s*=\s*[rf]?([\"'])(.+?)\1")
_HUB_DOWNLOADS = frozenset({"snapshot_download", "hf_hub_download"})
_LOADERS = frozenset({"sentence_transformers.SentenceTransformer", "transformers.pipeline"})
_TARGET_OPTIONS = ("--local-dir", "--local_dir", "--cache-dir", "--cache_dir", "--download-dir", "--model-dir")
# Programs whose `download` verb fetches packages, not model weights.
_PACKAGE_TOOLS = frozenset(
    {"apt", "apt-get", "aptitude", "yum", "dnf", "apk", "pip", "pip3", "uv", "poetry", "pdm", "conda", "mamba",
     "micromamba", "npm", "yarn", "pnpm", "go", "cargo", "gem", "brew", "mvn", "gradle", "dotnet", "composer"}
)  # fmt: skip
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
    heredoc = dockerfile.python_heredoc(step)
    module = embedded_module(dockerfile, heredoc[0]) if heredoc is not None else None
    if module is not None:
        target = python_download_target(module, step, {})
        if target is not False:
            word = next(iter(dockerfile.run_commands(step)), None)
            yield Download(word.argv[0] if word else Word("", 0), "python <<heredoc", target)
    for command, here in dockerfile.commands_in_place(step):
        found = _download(dockerfile, command, here)
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


def _download(dockerfile: Dockerfile, command: SimpleCommand, step: Step) -> Download | None:
    if not command.argv:
        return None
    extra = {name: step.expand(value) for name, value in command.assignments}
    program, args, word = command.program, [w.text for w in command.argv], command.argv[0]
    if PYTHON_PROGRAM.fullmatch(program):
        return _python_download(dockerfile, command, step, extra)
    script = _shell_script(dockerfile, command, step)
    if script is not None:
        return _script_download(dockerfile, command, step, extra, script)
    if program == "volcache" and args[1:2] == ["fetch"]:
        return Download(word, "volcache fetch", _volcache_home(step, extra))
    if program in ("wget", "curl"):
        return _http_download(command, step, extra)
    if program == "git" and args[1:2] == ["clone"]:
        return _git_clone(command, step, extra)
    return _cli_download(command, step, extra)


def _shell_script(dockerfile: Dockerfile, command: SimpleCommand, step: Step) -> ContextFile | None:
    """The build context shell script a command runs (`bash /fetch.sh`, `/fetch.sh`)."""
    for word in script_words(command):
        found = context_file(dockerfile, step, step.absolute(word))
        if found is not None and found.kind == "shell":
            return found
    return None


def _script_download(
    dockerfile: Dockerfile, command: SimpleCommand, step: Step, extra: dict[str, str], script: ContextFile
) -> Download | None:
    """The first download of a context shell script run at build time, with the step's variables."""
    try:
        text = script.path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    env = {**step.env, **extra}
    inner = Dockerfile(script.display, text, dockerfile.mount_points, script=True, env=env, workdir=step.workdir)
    for inner_step in inner.steps:
        for found in downloads(inner, inner_step):
            tool = f"{posixpath.basename(script.display)} ({found.tool})"
            return Download(command.argv[0], tool, found.target)
    return None


def _cli_download(command: SimpleCommand, step: Step, extra: dict[str, str]) -> Download | None:
    """The `download` verb of a model command line: `hf download`, `huggingface-cli
    download`, `text-generation-server download-weights`, `litgpt download`, ..."""
    args = [w.text for w in command.argv]
    verb = args[1] if len(args) > 1 else ""
    if command.program in _PACKAGE_TOOLS or not (verb == "download" or verb.startswith(("download-", "download_"))):
        return None
    explicit = option_value(command, *_TARGET_OPTIONS)
    target = step.absolute(explicit.text, extra) if explicit else hub_cache(step, extra)
    return Download(command.argv[0], f"{command.program} {verb}", target)


def _python_download(
    dockerfile: Dockerfile, command: SimpleCommand, step: Step, extra: dict[str, str]
) -> Download | None:
    args, word = [w.text for w in command.argv], command.argv[0]
    if "-c" in args[1:-1]:
        code = args[args.index("-c") + 1]
        module = embedded_module(dockerfile, code)
        if module is not None:
            target = python_download_target(module, step, extra)
            return Download(word, f"{command.program} -c", target) if target is not False else None
        if not any(marker in code for marker in _PYTHON_DOWNLOADS):
            return None
        literal = _PYTHON_TARGET.search(code)
        target_text = step.absolute(literal.group(2), extra) if literal else hub_cache(step, extra)
        return Download(word, f"{command.program} -c", target_text)
    if args[1:3] == ["-m", "volcache"] and args[3:4] == ["fetch"]:
        return Download(word, "volcache fetch", _volcache_home(step, extra))
    script = next((a for a in args[1:] if not a.startswith("-")), "")
    if not script.endswith(".py") or "-m" in args[1:]:
        return None
    tool = f"{command.program} {posixpath.basename(script)}"
    found = context_file(dockerfile, step, step.absolute(script, extra))
    module = script_module(found, dockerfile.mount_points) if found is not None else None
    if module is not None:
        target = python_download_target(module, step, extra)
        return Download(word, tool, target) if target is not False else None
    if "download" in posixpath.basename(script).lower():
        return Download(word, tool, hub_cache(step, extra))
    return None


def python_download_target(module: PythonModule, step: Step, extra: dict[str, str]) -> str | Literal[False] | None:
    """Where the first download of a Python module run at `step` writes: a folder, None
    when it downloads somewhere the file does not say, False when it downloads nothing."""
    resolver = module.resolver
    for call, name in module.calls():
        last = name.rsplit(".", 1)[-1]
        if name.startswith("huggingface_hub") and last in _HUB_DOWNLOADS:
            keywords = ("local_dir", "cache_dir")
        elif last == "from_pretrained" or name in _LOADERS:
            first = call.args[0] if call.args else keyword_value(call, "pretrained_model_name_or_path")
            source = resolver.value(first) if first is not None else None
            if source is not None and source.startswith(("/", ".", "~")):
                continue  # loads a local folder: nothing is downloaded
            keywords = ("cache_dir", "cache_folder")
        else:
            continue
        for keyword in keywords:
            expr = keyword_value(call, keyword)
            if expr is not None:
                value = resolver.value(expr)
                known = value is not None and not value.startswith(UNKNOWN)
                return step.absolute(value, extra) if known and value is not None else None
        return hub_cache(step, extra)
    return False


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
