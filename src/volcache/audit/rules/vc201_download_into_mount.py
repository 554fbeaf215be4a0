"""VC201: weights downloaded at build time into the volume mount point."""

from __future__ import annotations

from collections.abc import Iterator

from .._dockerfile import Dockerfile
from .._downloads import downloads
from .._finding import Finding
from ._base import DockerfileRule


class DownloadIntoMount(DockerfileRule):
    """Downloading at build time into the volume mount point.

    ## What it does
    Finds `RUN` commands that download into a folder under the volume mount point
    (`/runpod-volume`, the `mount-points` setting, and every `VOLUME` of the file):
    the `download` verb of any model command line (`hf download`, `huggingface-cli
    download`, `text-generation-server download-weights`, `litgpt download`, ...:
    `--local-dir`, `--cache-dir`, `--download-dir`, or the Hub cache that
    `HF_HUB_CACHE`/`HF_HOME` name at that line), Python that downloads
    (`snapshot_download`, `hf_hub_download`, `from_pretrained` of a repo id,
    `SentenceTransformer(...)`, `pipeline(...)`) in `python -c` code, a Python heredoc, or
    a script of the build context that the `RUN` executes (`COPY builder/fetch.py /fetch.py` then
    `RUN python /fetch.py`), a `python *download*.py` script that is not in the context,
    `volcache fetch`, `wget`, `curl -o/-O` and `git clone`.

    ## Why is this bad?
    At run time the network volume is mounted over that folder and hides what the image
    put there. The downloaded weights stay in the image as dead weight (a bigger image,
    slower to pull, on the container disk) and the worker downloads them again onto the
    volume: two copies, one of them useless.

    ## Example
    ```dockerfile
    ENV HF_HOME=/runpod-volume/models
    RUN python -c "from huggingface_hub import snapshot_download; snapshot_download('org/model')"
    ```

    ## Use instead
    Download at run time into the volume (`volcache fetch` in the worker, once per
    volume). If the image is to carry the weights, put them at a path outside the mount
    point and use them in place from there.

    ## When it stays silent
    For a `RUN mkdir` under the mount point (no weights, only an empty folder), for
    package tools (`apt-get download`, `pip download`), for a context script that
    downloads nothing (or loads a local folder), for a script outside the context whose
    name does not say "download", and when the target folder depends on a variable the
    file does not set.
    """

    code = "VC201"
    name = "download-into-mount"
    summary = "build-time download into the volume mount point"
    fix = "download at run time onto the volume, or bake the weights outside the mount point and use them in place"

    def check(self, dockerfile: Dockerfile) -> Iterator[Finding]:
        for step in dockerfile.steps:
            if step.keyword != "RUN":
                continue
            for download in downloads(dockerfile, step):
                mount = dockerfile.mount_of(download.target) if download.target else None
                if mount:
                    message = (
                        f"`{download.tool}` at build time writes under the volume mount point ({download.target!r}): "
                        "hidden once the volume is mounted, dead weight in the image and a second download"
                    )
                    yield self.at(dockerfile, step, download.word.offset, message)
