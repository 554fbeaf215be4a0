"""VC202: a cache ENV on the container disk in a worker meant to use the volume."""

from __future__ import annotations

from collections.abc import Iterator

from .._context import is_volume_worker
from .._dockerfile import Dockerfile, Step
from .._downloads import weight_targets
from .._finding import Finding
from .._locations import CACHE_ENV_VARS, is_under
from ._base import DockerfileRule


class CacheEnvOnContainerDisk(DockerfileRule):
    """Pointing the model cache at the container disk in a volume worker.

    ## What it does
    In a Dockerfile of a worker meant to use a network volume, finds `ENV` of a cache
    variable (`HF_HOME`, `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`, `TRANSFORMERS_CACHE`,
    `TORCH_HOME`, `SENTENCE_TRANSFORMERS_HOME`, `HF_DATASETS_CACHE`, `VOLCACHE_HOME`, ...)
    set to an absolute path outside every mount point: `/tmp/models`, `/root/.cache/...`,
    `/app/models`. A worker is meant to use the volume when the file declares a `VOLUME`,
    an instruction names a mount point, or a file the image copies from the build context
    (its handler, its start script) names one. A `runpod/...` base image or `pip install
    runpod` alone does not say so: many RunPod workers bake their models and use no volume.

    ## Why is this bad?
    The container disk is small and ephemeral. A cache there is downloaded again by every
    worker at every cold start and fills the disk; it is also how the seed's worker ended
    up copying `/tmp/models` onto the volume at start.

    ## Example
    ```dockerfile
    FROM runpod/base:0.6.2-cuda12.1.0
    ENV HF_HOME=/tmp/models
    ```

    ## Use instead
    ```dockerfile
    ENV HF_HOME=/runpod-volume/models
    ENV HF_HUB_CACHE=/runpod-volume/models/hub
    ```

    ## When it stays silent
    In a Dockerfile with no sign of a volume; for relative paths and paths built from
    variables the file does not set; for `HF_XET_CACHE` (its staging belongs on the
    ephemeral disk); and when the image itself fills that cache at build time (a
    download, also by a Python script of the build context that `RUN` executes, or a
    `COPY` of model files into it): a baked image used in place is a legitimate choice.
    When the bake fills `HF_HOME` (its hub cache), every cache variable inside that
    `HF_HOME` tree (`HF_DATASETS_CACHE=$HF_HOME/datasets`, ...) belongs to the bake too.
    """

    code = "VC202"
    name = "cache-env-on-container-disk"
    summary = "cache variable points at the container disk in a volume worker"
    fix = "point the cache at the volume, e.g. ENV HF_HOME=/runpod-volume/models"

    def check(self, dockerfile: Dockerfile) -> Iterator[Finding]:
        if dockerfile.is_script:
            return
        candidates = list(_container_disk_caches(dockerfile))
        # Whether the image uses a volume may mean reading its build context: only when needed.
        if not candidates or not is_volume_worker(dockerfile):
            return
        baked = weight_targets(dockerfile)
        for step, key, path, offset in candidates:
            if not _baked(dockerfile, step, path, baked):
                mount = dockerfile.mount_points[0]
                message = (
                    f"{key}={path} puts the model cache on the container disk, not the volume ({mount}): "
                    "every worker downloads again and fills its disk"
                )
                fix = f"point it at the volume, e.g. ENV {key}={mount}/models"
                yield self.at(dockerfile, step, offset, message, fix)


def _container_disk_caches(dockerfile: Dockerfile) -> Iterator[tuple[Step, str, str, int]]:
    """`(step, variable, absolute path, offset)` of each ENV of a cache variable that
    points at a known absolute path outside every mount point."""
    for step in dockerfile.steps:
        if step.keyword != "ENV":
            continue
        for key, raw, offset in dockerfile.env_entries(step):
            if key not in CACHE_ENV_VARS or not step.expand(raw).startswith(("/", "~")):
                continue  # not a cache; relative, or built from a variable this file does not set
            path = step.absolute(raw)
            if not dockerfile.mount_of(path):
                yield step, key, path, offset


def _baked(dockerfile: Dockerfile, step: Step, path: str, baked: list[str]) -> bool:
    """Whether the image fills `path` at build time, or the `HF_HOME` tree `path` is in."""
    if any(is_under(t, path) or is_under(path, t) for t in baked):
        return True
    home = dockerfile.stage_env(step.stage).get("HF_HOME")
    if not home or not home.startswith("/"):
        return False
    home = step.absolute(home)
    return is_under(path, home) and any(is_under(t, home) for t in baked)
