"""VC107: a model loaded with `from_pretrained` and written again with `save_pretrained`."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from .._finding import Finding
from .._locations import is_known_absolute, mount_of
from .._python import PythonModule, keyword_value
from ._base import PythonRule, argument

# Objects whose files are not weights (a tokenizer's vocabulary, a config).
_SMALL_FILES = ("Tokenizer", "Processor", "Config", "FeatureExtractor", "Scheduler")
# A file that trains, merges or quantizes saves new weights, not a second copy.
_CHANGES_WEIGHTS = (
    "Trainer", ".train(", ".fit(", "backward(", "optimizer", "merge_and_unload", "quantiz", "get_peft_model",
    "load_state_dict", "fuse_lora", "prune",
)  # fmt: skip


class SavedTwice(PythonRule):
    """Saving a loaded model again: weights on disk twice without a copy call.

    ## What it does
    Finds `m = X.from_pretrained(ID, cache_dir=C)` followed, in the same function, by
    `m.save_pretrained(Y)` of that same object, where `Y` is on the container disk, or
    where both `C` and `Y` are under the volume mount point.

    ## Why is this bad?
    `from_pretrained` already put the weights in the cache; `save_pretrained` writes them
    out a second time. On the container disk that copy is made again at every cold start
    and fills the disk; on the volume it doubles the model's footprint (I1), with no
    `shutil.copy` in sight.

    ## Example
    ```python
    model = AutoModel.from_pretrained("org/model", cache_dir="/runpod-volume/models/hub")
    model.save_pretrained("/runpod-volume/models/org-model")
    ```

    ## Use instead
    ```python
    path = snapshot_download("org/model", cache_dir="/runpod-volume/models/hub")
    model = AutoModel.from_pretrained(path)  # load from the snapshot folder, in place
    ```

    ## When it stays silent
    For tokenizers, processors, configs and schedulers (small files, not weights); in
    files that train, merge, quantize or prune (they save new weights); when `Y` or (for
    the volume case) `C` cannot be resolved; and when the object is bound again between
    the load and the save.
    """

    code = "VC107"
    name = "saved-twice"
    summary = "a model loaded with from_pretrained is saved again with save_pretrained"
    fix = "load from the cache's snapshot folder in place; save only weights you changed"
    triggers = ("save_pretrained",)

    def check(self, module: PythonModule) -> Iterator[Finding]:
        if any(marker in module.text for marker in _CHANGES_WEIGHTS):
            return
        for node in module.nodes:
            if not _is_save(node):
                continue
            assert isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            assert isinstance(node.func.value, ast.Name)
            load = _loaded_by(module, node.func.value, node.lineno)
            if load is None:
                continue
            message = self._problem(module, node, load, node.func.value.id)
            if message is not None:
                yield self.at(module, node, message)

    @staticmethod
    def _problem(module: PythonModule, save: ast.Call, load: ast.Call, name: str) -> str | None:
        resolver = module.resolver
        dest_expr = argument(save, 0, "save_directory")
        dest = resolver.value(dest_expr) if dest_expr is not None else None
        if not is_known_absolute(dest):
            return None
        assert dest is not None
        mounts = module.mount_points
        saved = f"{name}.save_pretrained({dest!r}) writes again the weights from_pretrained loaded (line {load.lineno})"
        if mount_of(dest, mounts) is None:
            return f"{saved}: a second copy, on the container disk"
        cache_expr = keyword_value(load, "cache_dir")
        cache = resolver.value(cache_expr) if cache_expr is not None else None
        if is_known_absolute(cache) and cache is not None and mount_of(cache, mounts):
            return f"{saved} into the cache {cache!r}: a second copy on the volume"
        return None


def _is_save(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "save_pretrained"
        and isinstance(node.func.value, ast.Name)
    )


def _loaded_by(module: PythonModule, name: ast.Name, line: int) -> ast.Call | None:
    """The `from_pretrained` call `name` was last bound to before `line`, in its scope."""
    bindings = [b for b in module.scope_of(name).bindings.get(name.id, []) if b.line < line]
    value = bindings[-1].value if bindings else None
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)):
        return None
    if value.func.attr != "from_pretrained":
        return None
    if any(marker in ast.unparse(value.func.value) for marker in _SMALL_FILES):
        return None
    return value
