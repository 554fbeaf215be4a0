"""VC205: `ENV TRANSFORMERS_CACHE` (ignored since transformers 5)."""

from __future__ import annotations

from collections.abc import Iterator

from .._dockerfile import Dockerfile
from .._finding import Finding
from ._base import DockerfileRule

VARIABLE = "TRANSFORMERS_CACHE"


class DockerfileTransformersCache(DockerfileRule):
    """Relying on `ENV TRANSFORMERS_CACHE` in a Dockerfile.

    ## What it does
    Finds `ENV TRANSFORMERS_CACHE=...` (both ENV forms). A warning.

    ## Why is this bad?
    transformers 5 no longer reads `TRANSFORMERS_CACHE`: the cache is where
    `HF_HUB_CACHE` (or `HF_HOME/hub`) says. An image that sets only `TRANSFORMERS_CACHE`
    downloads into `/root/.cache/huggingface` on the container disk.

    ## Example
    ```dockerfile
    ENV TRANSFORMERS_CACHE=/runpod-volume/models
    ```

    ## Use instead
    ```dockerfile
    ENV HF_HOME=/runpod-volume/models
    ENV HF_HUB_CACHE=/runpod-volume/models/hub
    ```
    Keep `TRANSFORMERS_CACHE` beside them only for transformers < 5, with a
    `# volcache: ignore[VC205]` comment line above it.

    ## When it stays silent
    For `ARG TRANSFORMERS_CACHE` and for the name in `RUN` commands.
    """

    code = "VC205"
    name = "dockerfile-transformers-cache"
    summary = "ENV TRANSFORMERS_CACHE is ignored since transformers 5"
    fix = "set HF_HUB_CACHE (or HF_HOME); keep TRANSFORMERS_CACHE only for transformers < 5"
    severity = "warning"

    def check(self, dockerfile: Dockerfile) -> Iterator[Finding]:
        for step in dockerfile.steps:
            if step.keyword == "ENV":
                for key, _, offset in dockerfile.env_entries(step):
                    if key == VARIABLE:
                        message = f"{VARIABLE} is ignored since transformers 5: the cache follows HF_HUB_CACHE"
                        yield self.at(dockerfile, step, offset, message)
