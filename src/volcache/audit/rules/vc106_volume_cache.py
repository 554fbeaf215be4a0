"""VC106: RunPod's `VolumeCache` over model or cache folders (it copies them)."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from .._finding import Finding
from .._locations import is_model_location
from .._python import PythonModule
from ._base import PythonRule, argument, describe


class VolumeCacheOverModels(PythonRule):
    """Mirroring model folders with RunPod's `VolumeCache`.

    ## What it does
    Finds `runpod.serverless.VolumeCache(...)` (however imported) whose `dirs` name a
    model or cache location: a literal, a name assigned from one, or a cache variable
    such as `os.environ["HF_HOME"]`.

    ## Why is this bad?
    `VolumeCache` keeps a mirror of local folders on the volume and copies them back and
    forth (`hydrate()` into the container at a cold start, `sync()` onto the volume at
    exit). For weights that is two full copies: one on the volume, one on each worker's
    container disk, and a multi-gigabyte copy at every cold start (I1).

    ## Example
    ```python
    from runpod.serverless import VolumeCache

    with VolumeCache(dirs=["/root/.cache/huggingface"]):
        model = load_model()
    ```

    ## Use instead
    Point `HF_HOME`/`HF_HUB_CACHE` at the volume and load from it in place (volcache's
    model store). Keep `VolumeCache` for small non-weight state, if at all.

    ## When it stays silent
    When `dirs` cannot be resolved from the file, or names folders that are not model or
    cache locations.
    """

    code = "VC106"
    name = "volume-cache-over-models"
    summary = "runpod VolumeCache copies model folders"
    fix = "point HF_HOME/HF_HUB_CACHE at the volume and load in place; do not mirror weights with VolumeCache"
    triggers = ("VolumeCache",)

    def check(self, module: PythonModule) -> Iterator[Finding]:
        resolver = module.resolver
        for call, name in module.calls():
            if not (name.startswith("runpod.") and name.endswith(".VolumeCache")):
                continue
            dirs = argument(call, 0, "dirs")
            if dirs is None:
                continue
            elements: list[ast.expr] = resolver.sequence(dirs) or [dirs]
            for element in elements:
                value = resolver.value(element)
                if is_model_location(value):
                    shown = describe(module, element, value)
                    message = f"runpod VolumeCache mirrors model folder {shown}: every worker copies the weights"
                    yield self.at(module, call, message)
                    break
