"""VC204: `RUN cp`/`rsync`/`tar` of model folders."""

from __future__ import annotations

from collections.abc import Iterator

from .._dockerfile import Dockerfile
from .._finding import Finding
from .._locations import is_model_location
from .._shell import copied_model_operands
from ._base import DockerfileRule


class RunCopyModel(DockerfileRule):
    """Copying model folders in a `RUN` instruction or a shell script.

    ## What it does
    Finds `RUN cp`, `RUN rsync` and `RUN tar --create` (shell or JSON form, anywhere in a
    `&&` chain, after `sudo`/`env`) with a model or cache location among their operands,
    after substituting the variables the Dockerfile sets (`cp -r $HF_HOME ...`). It reads
    shell scripts (`*.sh`, and the scripts a Dockerfile's `ENTRYPOINT`/`CMD`/`RUN` runs from
    its build context) the same way, with the variables the script and the image set:
    a `start.sh` that copies models from the volume into an app folder at every start.

    ## Why is this bad?
    The copy stores the weights a second time in the image layer (or under the mount
    point, where the volume hides them); the seed's build cache in `/tmp/models` that was
    later copied onto the volume started like this. In a start script the copy is made
    again at every cold start, onto the container disk.

    ## Example
    ```dockerfile
    RUN cp -r /tmp/models /app/models
    ```

    ## Use instead
    Download or `COPY` the weights once, to the folder they are used from; in a start
    script, point the application at the folder on the volume (or link it: `ln -s`).

    ## When it stays silent
    For `cp -l`/`cp -s` (links), `tar` extraction (unpacking a downloaded archive), `mv`,
    and operands that are not model locations (`cp config.json /app/`).
    """

    code = "VC204"
    name = "run-copy-model"
    summary = "RUN cp/rsync/tar copies model folders"
    fix = "download or COPY the weights once, to the folder they are used from"
    also_reads = ("shell",)

    def check(self, dockerfile: Dockerfile) -> Iterator[Finding]:
        for step in dockerfile.steps:
            if step.keyword != "RUN":
                continue
            for command in dockerfile.run_commands(step):
                operands = copied_model_operands(command, is_model_location, step.expand)
                if operands:
                    shown = ", ".join(repr(step.expand(w.text)) for w in operands)
                    if dockerfile.is_script:
                        message = (
                            f"`{command.program}` copies model files ({shown}): the weights are stored twice, "
                            "and copied again each time the script runs"
                        )
                    else:
                        message = f"RUN `{command.program}` copies model files ({shown}): the weights are stored twice"
                    yield self.at(dockerfile, step, command.argv[0].offset, message)
