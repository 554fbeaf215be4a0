"""VC101: a Python copy (`shutil.copytree`, `copy`, `copy2`, `copyfile`, a cross-filesystem `move`) of model files."""

from __future__ import annotations

from collections.abc import Iterator

from .._finding import Finding
from .._locations import is_known_absolute, is_model_location, mount_of
from .._python import PythonModule
from ._base import PythonRule, argument, describe

_COPIES = frozenset(
    {
        "shutil.copytree",
        "shutil.copy",
        "shutil.copy2",
        "shutil.copyfile",
        "distutils.dir_util.copy_tree",
        "distutils.file_util.copy_file",
    }
)
_MOVE = "shutil.move"


class CopyModelFiles(PythonRule):
    """Copying model or cache files in Python.

    ## What it does
    Finds `shutil.copytree`, `shutil.copy`, `shutil.copy2`, `shutil.copyfile` (and
    `distutils`' `copy_tree`/`copy_file`) whose source or destination is a model or cache
    location, and `shutil.move` of one from one filesystem to another (the container disk
    to the volume mount point, or back), which is a copy followed by a delete. A model
    location is recognised by its folder names (`models_cache`, `ckpt`,
    `pretrained_weights`), a weight file suffix, a cache variable, or what
    `hf_hub_download`/`snapshot_download` returned (a file of the Hub cache).

    ## Why is this bad?
    Every copy stores the weights a second time: a "migration" of a build cache onto the
    network volume fills the container disk and the volume alike, takes minutes at each
    cold start, and is exactly how the seed's worker ran out of space (contract I1: one
    copy). Stale caches are to be deleted, never migrated (I6).

    ## Example
    ```python
    build_cache = "/tmp/models"
    volume_cache = "/runpod-volume/models"
    shutil.copytree(build_cache, volume_cache, dirs_exist_ok=True)
    ```

    ## Use instead
    ```python
    os.environ["HF_HUB_CACHE"] = "/runpod-volume/models/hub"  # before any HF import
    path = snapshot_download(repo_id)  # downloads once into the cache, loads in place
    shutil.rmtree("/tmp/models", ignore_errors=True)  # a stale build cache is deleted
    ```

    ## When it stays silent
    When neither path can be resolved from the file and its sibling modules (a parameter
    nobody in the file passes a literal to, an attribute such as `self.cache_dir`, the
    return value of a function other than `hf_hub_download`/`snapshot_download`), when
    the paths are ordinary files (`config.json`, `README.md`) or folders whose names say
    they hold something else (`model_outputs`), and for a `shutil.move` within one
    filesystem (a rename) or between paths it cannot place.
    """

    code = "VC101"
    name = "copy-model-files"
    summary = "Python copies model or cache files"
    fix = "download once into the cache on the volume and load in place; delete stale caches instead of copying"
    triggers = ("shutil", "distutils")  # every function it knows is imported from these

    def check(self, module: PythonModule) -> Iterator[Finding]:
        resolver = module.resolver
        for call, name in module.calls():
            if name not in _COPIES and name != _MOVE:
                continue
            src_expr, dst_expr = argument(call, 0, "src"), argument(call, 1, "dst")
            src = resolver.value(src_expr) if src_expr is not None else None
            dst = resolver.value(dst_expr) if dst_expr is not None else None
            if not (is_model_location(src) or is_model_location(dst)):
                continue
            paths = f"{describe(module, src_expr, src)} -> {describe(module, dst_expr, dst)}"
            if name in _COPIES:
                yield self.at(module, call, f"{name}() copies model files ({paths}): the weights end up on disk twice")
            elif self._crosses_filesystems(src, dst, module.mount_points):
                message = f"{name}() across filesystems copies model files ({paths}): a full copy, then a delete"
                yield self.at(module, call, message)

    @staticmethod
    def _crosses_filesystems(src: str | None, dst: str | None, mounts: tuple[str, ...]) -> bool:
        if not (is_known_absolute(src) and is_known_absolute(dst)):
            return False
        assert src is not None and dst is not None
        return mount_of(src, mounts) != mount_of(dst, mounts)
