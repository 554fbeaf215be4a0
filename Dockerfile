# The volcache RunPod worker: the model's weights live once, on the network volume, and are
# loaded in place. Nothing is downloaded at build time and nothing is written under
# /runpod-volume here: that path is the volume's mount point, and whatever an image puts there
# is hidden when the volume mounts (dead weight on the container disk, then a second download).
#
# This is the one Dockerfile RunPod reads: the Hub and GitHub deploys build the repository root's
# `Dockerfile` with the root as context. It is a regular file, never a symlink: BuildKit reads
# the Dockerfile from its own folder and does not follow a link out of it.
#
#   docker build --platform linux/amd64 -t volcache-worker .
#   docker build --platform linux/amd64 --build-arg BAKE_MODEL=org/name --build-arg BAKE_REVISION=<commit> \
#     -t volcache-worker:baked .
#
# BAKE_MODEL (optional) downloads one model into /opt/models, outside the mount point, where the
# worker uses it in place as a read-only cache (VOLCACHE_EXTRA_CACHES). For a private model, pass
# the token as a build secret: --secret id=hf_token,env=HF_TOKEN (it never enters a layer).
ARG BASE_IMAGE=pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
# torch (and torchvision/torchaudio where the base has them) stay the base image's CUDA build:
# their installed versions, local label included, become constraints, so a dependency that wants
# another torch fails the build instead of pulling a multi-GB build for a newer driver than
# allowedCudaVersions promises. Everything else is pinned by constraints.txt.
RUN pip list --format=freeze | grep -iE '^(torch|torchvision|torchaudio)==' > /tmp/base-torch.txt \
    && grep -iq '^torch==' /tmp/base-torch.txt \
    && cat /tmp/base-torch.txt \
    && pip install -c constraints.txt -c /tmp/base-torch.txt ".[worker]"

ARG BAKE_MODEL=""
ARG BAKE_REVISION=main
RUN --mount=type=secret,id=hf_token,required=false \
    if [ -n "$BAKE_MODEL" ]; then \
      HF_TOKEN="$(cat /run/secrets/hf_token 2>/dev/null || true)" \
      VOLCACHE_VOLUME=/opt/models VOLCACHE_HOME=/opt/models VOLCACHE_STALE_CACHES= VOLCACHE_FREE_MARGIN=0 \
      volcache fetch "$BAKE_MODEL" --revision "$BAKE_REVISION"; \
    fi

# The caches on the volume, as in the seed; volcache.pin() sets the same values at start.
# TRANSFORMERS_CACHE is left out: transformers 5 ignores it (pin() sets it for transformers 4).
# MODEL_REVISION travels with MODEL_NAME: a baked commit is found in /opt/models only under the
# revision it was fetched at (with "main" the worker would look on the volume and download again).
ENV VOLCACHE_VOLUME=/runpod-volume \
    HF_HOME=/runpod-volume/models \
    HF_HUB_CACHE=/runpod-volume/models/hub \
    TORCH_HOME=/runpod-volume/models/torch \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_XET_CACHE=/tmp/volcache/xet \
    VOLCACHE_EXTRA_CACHES=/opt/models/hub \
    MODEL_NAME=${BAKE_MODEL} \
    MODEL_REVISION=${BAKE_REVISION}

COPY handler.py test_input.json ./
CMD ["python", "-u", "handler.py"]
