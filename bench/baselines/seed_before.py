"""The seed's "before": download at image build time into /tmp/models, copytree onto the volume at start.

From seed/runpod-volume-fix.md: the Dockerfile set ``HF_HOME=/tmp/models`` (and TRANSFORMERS_CACHE,
HF_HUB_CACHE) so the build-time download landed in /tmp/models; at run time
`setup_cache_hierarchy()` found both caches and called `migrate_build_cache_to_volume()`, which is
``shutil.copytree(build_cache, volume_cache, dirs_exist_ok=True)``.

``python -m bench.baselines.seed_before build MODEL`` is the Dockerfile's download step (run with
``HF_HOME`` at the build cache); ``python -m bench.baselines.seed_before start`` is the start-up
migration (the volume's cache folder exists: an earlier start or a `mkdir` made it; the seed
copies only then). The benchmark measures the disk after them; loading the model afterwards reads
what is there and changes no byte on disk, so it is left out.
"""

from __future__ import annotations

import os
import shutil
import sys

from bench.baselines import bench_paths


def build(model: str) -> str:
    """The image build's `RUN` download into the build cache (HF_HOME points there)."""
    from huggingface_hub import snapshot_download

    return snapshot_download(model)


def migrate_build_cache_to_volume(build_cache: str, volume_cache: str) -> None:
    """Migrate models from build-time cache to persistent volume."""
    # PROBLEM: This copied entire model cache, duplicating disk usage
    shutil.copytree(build_cache, volume_cache, dirs_exist_ok=True)


def setup_cache_hierarchy() -> None:
    # PROBLEM: Multi-tier fallback system with copying
    volume_cache, build_cache = bench_paths()  # the seed's /runpod-volume/models and /tmp/models, in temp folders
    if os.path.exists(volume_cache):  # noqa: SIM102 - the seed's code, as written
        if os.path.exists(build_cache):
            migrate_build_cache_to_volume(build_cache, volume_cache)  # COPYING!


if __name__ == "__main__":
    if sys.argv[1:2] == ["build"]:
        print(build(sys.argv[2]))
    elif sys.argv[1:2] == ["start"]:
        setup_cache_hierarchy()
    else:
        raise SystemExit("usage: python -m bench.baselines.seed_before build MODEL | start")
