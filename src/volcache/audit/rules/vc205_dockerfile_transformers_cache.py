"""VC205: `ENV TRANSFORMERS_CACHE` relied on, or split from the hub cache."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from .._dockerfile import Dockerfile, Step
from .._downloads import hub_cache
from .._finding import Finding
from ._base import DockerfileRule

VARIABLE = "TRANSFORMERS_CACHE"
_HUB_VARIABLES = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME")


class DockerfileTransformersCache(DockerfileRule):
    """Relying on `ENV TRANSFORMERS_CACHE` in a Dockerfile.

    ## What it does
    Finds `ENV TRANSFORMERS_CACHE=...` (both ENV forms) that something relies on: the
    stage sets neither `HF_HUB_CACHE` nor `HF_HOME`, or `TRANSFORMERS_CACHE` points
    somewhere other than the hub cache (`HF_HUB_CACHE`, else `HF_HOME/hub`) that the
    stage ends with. A warning.

    ## Why is this bad?
    transformers 5 no longer reads `TRANSFORMERS_CACHE`: the cache is where
    `HF_HUB_CACHE` (or `HF_HOME/hub`) says. An image that sets only `TRANSFORMERS_CACHE`
    downloads into `/root/.cache/huggingface` on the container disk; one that sets it to
    another folder than the hub cache makes transformers 4 and 5 cache in different
    places, so an upgrade downloads every model again.

    ## Example
    ```dockerfile
    ENV TRANSFORMERS_CACHE=/runpod-volume/models
    ENV HF_HOME=/runpod-volume/models
    ```

    ## Use instead
    ```dockerfile
    ENV HF_HOME=/runpod-volume/models
    ENV HF_HUB_CACHE=/runpod-volume/models/hub
    ENV TRANSFORMERS_CACHE=/runpod-volume/models/hub
    ```
    The last line only matters for transformers < 5; set to the hub cache it is harmless.

    ## When it stays silent
    For a `TRANSFORMERS_CACHE` equal to the hub cache (redundant), for values built from
    variables the file does not set, for `ARG TRANSFORMERS_CACHE` and for the name in
    `RUN` commands.
    """

    code = "VC205"
    name = "dockerfile-transformers-cache"
    summary = "ENV TRANSFORMERS_CACHE relied on, or split from the hub cache"
    fix = "set HF_HUB_CACHE (or HF_HOME); keep TRANSFORMERS_CACHE only for transformers < 5, set to the hub cache"
    severity = "warning"

    def check(self, dockerfile: Dockerfile) -> Iterator[Finding]:
        for step in dockerfile.steps:
            if step.keyword == "ENV":
                for key, raw, offset in dockerfile.env_entries(step):
                    if key == VARIABLE:
                        message = self._problem(dockerfile, step, raw)
                        if message is not None:
                            yield self.at(dockerfile, step, offset, message)

    @staticmethod
    def _problem(dockerfile: Dockerfile, step: Step, raw: str) -> str | None:
        final = dockerfile.stage_env(step.stage)
        if not any(final.get(name) for name in _HUB_VARIABLES):
            return (
                f"{VARIABLE} is set but neither HF_HUB_CACHE nor HF_HOME: transformers 5 ignores it "
                "and caches in /root/.cache/huggingface on the container disk"
            )
        mine = step.absolute(raw)
        hub = hub_cache(step, final)
        if "$" in mine + hub or posixpath.normpath(mine) == posixpath.normpath(hub):
            return None
        return f"{VARIABLE}={mine} is not the hub cache ({hub}): transformers 4 and 5 cache in different places"
