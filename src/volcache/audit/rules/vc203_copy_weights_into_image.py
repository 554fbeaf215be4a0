"""VC203: COPY/ADD of weight files into the image while the cache is on the volume."""

from __future__ import annotations

from collections.abc import Iterator

from .._dockerfile import Dockerfile, copy_operands
from .._finding import Finding
from .._locations import is_model_location
from ._base import DockerfileRule


class CopyWeightsIntoImage(DockerfileRule):
    """Copying weight files into the image when they belong on the volume.

    ## What it does
    Finds `COPY` and `ADD` (also `--from=` another stage, and `ADD` of a URL) of a model
    location (a weight file such as `model.safetensors`, a `models/` or
    `.cache/huggingface` folder) when the destination is under the volume mount point, or
    when the stage's cache variables (`HF_HOME`, `HF_HUB_CACHE`, ...) point at the volume.

    ## Why is this bad?
    Under the mount point the files are hidden when the volume is mounted. Elsewhere, the
    cache that the libraries use is on the volume, so the copy in the image is never
    loaded: the image carries the weights as dead weight and the worker downloads them a
    second time onto the volume.

    ## Example
    ```dockerfile
    ENV HF_HOME=/runpod-volume/models
    COPY models/ /app/models/
    ```

    ## Use instead
    Either keep the weights only on the volume (download them there at run time), or bake
    them into the image at a path outside the mount point, point the cache at it, and use
    them in place.

    ## When it stays silent
    For `COPY . /app` and other sources that do not name model files (what a build
    context holds is unknown), and in images whose cache is not on the volume (a baked
    image).
    """

    code = "VC203"
    name = "copy-weights-into-image"
    summary = "COPY/ADD of weight files into the image while the cache is on the volume"
    fix = "keep the weights only on the volume, or bake them outside the mount point and point the cache at them"

    def check(self, dockerfile: Dockerfile) -> Iterator[Finding]:
        for step in dockerfile.steps:
            if step.keyword not in ("COPY", "ADD"):
                continue
            sources, dest = copy_operands(step)
            models = [w for w in sources if is_model_location(step.expand(w.text))]
            if dest is None or not models:
                continue
            shown = ", ".join(repr(step.expand(w.text)) for w in models)
            mount = dockerfile.mount_of(step.absolute(dest.text))
            variable = dockerfile.cache_on_volume(step.stage)
            if mount:
                reason = f"into the volume mount point {mount}: the mounted volume hides them"
            elif variable:
                reason = f"into the image while {variable} points at the volume: the cache never loads them"
            else:
                continue
            yield self.at(dockerfile, step, models[0].offset, f"{step.keyword} of model files ({shown}) {reason}")
