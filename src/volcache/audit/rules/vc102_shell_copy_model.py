"""VC102: `cp`, `rsync` or `tar` of model files run from Python (`subprocess`, `os.system`)."""

from __future__ import annotations

from collections.abc import Iterator

from .._finding import Finding
from .._locations import is_model_location
from .._python import PythonModule
from .._shell import copied_model_operands
from ._base import PythonRule, is_runner, shell_commands


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
            if is_runner(name):
                for command in shell_commands(module, call, name):
                    operands = copied_model_operands(command, is_model_location)
                    if operands:
                        shown = ", ".join(repr(w.text) for w in operands)
                        message = f"`{command.program}` run by {name}() copies model files ({shown})"
                        yield self.at(module, call, message + ": the weights end up on disk twice")
