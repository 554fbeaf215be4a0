"""VC103: `snapshot_download`/`hf_hub_download` with `local_dir=`, and `hf download --local-dir`."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from .._dockerfile import Dockerfile
from .._finding import Finding
from .._python import PythonModule
from .._shell import local_dir_option
from ._base import PythonRule, is_runner, shell_commands

_FUNCTIONS = frozenset({"snapshot_download", "hf_hub_download"})


class DownloadLocalDir(PythonRule):
    """Downloading from the Hub with `local_dir=`.

    ## What it does
    Finds calls of `snapshot_download` and `hf_hub_download` that pass `local_dir=`:
    the functions imported from `huggingface_hub`, and the methods of the same names
    (`HfApi().snapshot_download(...)`, `huggingface_hub.snapshot_download(...)`). The Hub
    command line's `hf download ... --local-dir X` (and `huggingface-cli download`) is the
    same finding: run by `subprocess`/`os.system`, in a Dockerfile `RUN` line, or in a
    shell script.

    ## Why is this bad?
    With `local_dir=`, `huggingface_hub` writes real files into that folder, outside its
    cache. Files that are already in the cache are copied out of it, so the weights are on
    disk twice; and a folder outside the cache has none of the cache's bookkeeping
    (revisions, shared blobs, `hf cache`), so the next worker downloads again (I1).

    ## Example
    ```python
    from huggingface_hub import snapshot_download

    path = snapshot_download("org/model", local_dir="/runpod-volume/models/org-model")
    subprocess.run(["hf", "download", "org/model", "--local-dir", "/app/model"], check=True)
    ```

    ## Use instead
    ```python
    path = snapshot_download("org/model", cache_dir="/runpod-volume/models/hub")
    model = AutoModel.from_pretrained(path)  # the snapshot folder, in place
    ```

    ## When it stays silent
    For `local_dir=None`; for `local_dir=x` where `x` is a parameter of the enclosing
    function that defaults to `None` and is passed on unchanged (a wrapper that forwards
    its caller's choice); for a bare `snapshot_download(...)` that is not imported
    from `huggingface_hub` (a function of your own with that name); and for an
    `hf download` whose `--local-dir` is empty or a command line the file does not spell.
    """

    code = "VC103"
    name = "download-local-dir"
    summary = "Hub download with local_dir= copies files out of the cache"
    fix = "drop local_dir= and load from the snapshot path the call returns (cache_dir= may point at the volume)"
    triggers = ("local_dir", "local-dir")
    also_reads = ("dockerfile", "shell")

    def check(self, module: PythonModule) -> Iterator[Finding]:
        for node in module.nodes:
            if not isinstance(node, ast.Call) or not self._is_download(module, node.func):
                continue
            for keyword in node.keywords:
                value = keyword.value
                if keyword.arg == "local_dir" and not _is_none(value) and not _optional_parameter(module, value):
                    function = (module.qualname(node.func) or ast.unparse(node.func)).rsplit(".", 1)[-1]
                    message = f"{function}(local_dir=...) writes a second copy of the files outside the Hub cache"
                    yield self.at(module, keyword, message)
        for call, name in module.calls():
            if is_runner(name):
                for command in shell_commands(module, call, name):
                    if local_dir_option(command) is not None:
                        message = f"`{command.program} download --local-dir` run by {name}() writes a second copy"
                        yield self.at(module, call, message + " of the files outside the Hub cache")

    def check_commands(self, dockerfile: Dockerfile) -> Iterator[Finding]:
        for step in dockerfile.steps:
            if step.keyword != "RUN":
                continue
            for command in dockerfile.run_commands(step):
                option = local_dir_option(command)
                if option is not None:
                    message = f"`{command.program} download --local-dir` writes a second copy"
                    message += " of the files outside the Hub cache"
                    yield self.at_step(dockerfile, step, option.offset, message)

    @staticmethod
    def _is_download(module: PythonModule, func: ast.expr) -> bool:
        if isinstance(func, ast.Attribute):
            return func.attr in _FUNCTIONS
        if isinstance(func, ast.Name):
            qualname = module.qualname(func) or ""  # through aliases: `import ... as sd`
            return qualname.startswith("huggingface_hub.") and qualname.rsplit(".", 1)[-1] in _FUNCTIONS
        return False


def _is_none(value: ast.expr) -> bool:
    return isinstance(value, ast.Constant) and value.value is None


def _optional_parameter(module: PythonModule, value: ast.expr) -> bool:
    """`local_dir=local_dir` passing on a parameter that defaults to None, unchanged."""
    if not isinstance(value, ast.Name):
        return False
    scope = module.scope_of(value)
    default = scope.defaults.get(value.id)
    rebound = any(b.line < value.lineno for b in scope.bindings.get(value.id, []))
    return value.id in scope.params and default is not None and _is_none(default) and not rebound
