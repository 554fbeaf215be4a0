"""VC102: `cp`, `rsync` or `tar` of model files run from Python (`subprocess`, `os.system`)."""

from __future__ import annotations

import ast
import posixpath
from collections.abc import Iterator

from .._finding import Finding
from .._locations import UNKNOWN, is_model_location
from .._python import PythonModule
from .._shell import SimpleCommand, Word, copied_model_operands, split_commands
from ._base import PythonRule, argument

_RUNNERS = frozenset(
    {
        "subprocess.run",
        "subprocess.call",
        "subprocess.check_call",
        "subprocess.check_output",
        "subprocess.Popen",
        "subprocess.getoutput",
        "subprocess.getstatusoutput",
        "os.system",
        "os.popen",
        "asyncio.create_subprocess_shell",
    }
)
_EXEC = "asyncio.create_subprocess_exec"
_SHELLS = frozenset({"sh", "bash", "dash", "zsh"})


class ShellCopyModel(PythonRule):
    """Copying model files with `cp`, `rsync` or `tar` from Python.

    ## What it does
    Finds `subprocess.run`/`call`/`check_call`/`check_output`/`Popen`/`getoutput`,
    `os.system`, `os.popen` and `asyncio.create_subprocess_*` calls that run `cp`,
    `rsync` or `tar --create` with a model or cache location among their operands, in
    the list form (`["cp", "-r", src, dst]`) or as a shell string (also behind
    `sh -c`, `&&`, `;` and pipes).

    ## Why is this bad?
    It is the shell spelling of VC101: the weights end up on disk twice, the copy runs at
    every cold start, and it fills the container disk or the volume (contract I1).

    ## Example
    ```python
    subprocess.run(["cp", "-r", "/tmp/models", "/runpod-volume/models"], check=True)
    os.system("rsync -a /app/models/ /runpod-volume/models/")
    ```

    ## Use instead
    Point the cache at the volume before any Hugging Face import and load from it in
    place; delete a stale build cache (`shutil.rmtree`) instead of copying it.

    ## When it stays silent
    When no operand resolves to a model location (a command built by a function, a
    variable holding a list built at run time), for `cp -l`/`cp -s` (links, not copies),
    for `tar` extraction (how a downloaded archive is unpacked) and for `mv`.
    """

    code = "VC102"
    name = "shell-copy-model"
    summary = "Python runs cp, rsync or tar over model files"
    fix = "do not copy weights: load them in place from the cache on the volume; delete stale caches instead"
    triggers = ("subprocess", "system", "popen", "asyncio")

    def check(self, module: PythonModule) -> Iterator[Finding]:
        for call, name in module.calls():
            if name in _RUNNERS or name == _EXEC:
                for command in self._commands(module, call, name):
                    operands = copied_model_operands(command, is_model_location)
                    if operands:
                        shown = ", ".join(repr(w.text) for w in operands)
                        message = f"`{command.program}` run by {name}() copies model files ({shown})"
                        yield self.at(module, call, message + ": the weights end up on disk twice")

    @staticmethod
    def _commands(module: PythonModule, call: ast.Call, name: str) -> list[SimpleCommand]:
        resolver = module.resolver
        if name == _EXEC:
            elements = list(call.args)
        else:
            first = argument(call, 0, "args") or argument(call, 0, "cmd")
            sequence = resolver.sequence(first) if first is not None else None
            if first is None or sequence is None:
                text = resolver.value(first) if first is not None else None
                return split_commands(text) if text else []
            elements = sequence
        if any(isinstance(e, ast.Starred) for e in elements):
            return []
        argv = [resolver.value(e) or UNKNOWN for e in elements]
        if len(argv) >= 3 and posixpath.basename(argv[0]) in _SHELLS and argv[1] == "-c":
            return split_commands(argv[2])
        return [SimpleCommand(tuple(Word(a, 0) for a in argv))] if argv else []
