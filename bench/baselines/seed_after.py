"""The seed's "after" handler (seed/runpod-volume-fix.md), reimplemented as its author ran it.

- its Dockerfile sets ``HF_HOME``, ``TRANSFORMERS_CACHE``, ``HF_HUB_CACHE`` and ``TORCH_HOME`` under
  /runpod-volume/models (the benchmark passes them in the environment, as the image would);
- `setup_cache_hierarchy()` sets the same variables again at start, makes the folder and deletes
  the stale build cache /tmp/models;
- the model is loaded once at start, by repo id (the seed names no revision and no offline mode,
  so the Hub client checks the Hub on every start), and served by `runpod.serverless.start`.

The model library is sentence-transformers, as volcache's embeddings task uses, so both compute
the same result. Paths come from ``BENCH_VOLUME_CACHE`` and ``BENCH_BUILD_CACHE`` (the benchmark's
temporary folders) instead of the fixed /runpod-volume/models and /tmp/models.
"""

from __future__ import annotations

import json
import os
import shutil

import runpod

from bench.baselines import bench_paths

VOLUME, BUILD_CACHE = bench_paths()  # the seed's /runpod-volume/models and /tmp/models, in temporary folders
MODEL_NAME = os.environ.get("MODEL_NAME", "sentence-transformers/all-MiniLM-L6-v2")
RESULT_MARKER = "bench: result "


def setup_cache_hierarchy() -> None:
    """Configure HuggingFace cache to ONLY use /runpod-volume - no copying."""
    volume_cache = VOLUME

    # CRITICAL: Always use /runpod-volume/models as the ONLY cache location
    # Never copy models elsewhere to avoid disk space issues

    os.makedirs(volume_cache, exist_ok=True)

    # Set environment variables for exclusive /runpod-volume usage
    os.environ["HF_HOME"] = volume_cache
    os.environ["TRANSFORMERS_CACHE"] = volume_cache  # volcache: ignore[VC105] the seed, reproduced as it was
    os.environ["HF_HUB_CACHE"] = os.path.join(volume_cache, "hub")
    os.environ["TORCH_HOME"] = os.path.join(volume_cache, "torch")

    # Clean up any stale build cache to prevent confusion
    build_cache = BUILD_CACHE
    if os.path.exists(build_cache):
        shutil.rmtree(build_cache, ignore_errors=True)  # DELETE, don't copy


setup_cache_hierarchy()

from sentence_transformers import SentenceTransformer  # noqa: E402 - after the cache set-up, as the seed does

model = SentenceTransformer(MODEL_NAME)


def handler(job: dict) -> dict:  # type: ignore[type-arg]
    sentences = job["input"]["input"]
    embeddings = model.encode(sentences, normalize_embeddings=True).tolist()
    output = {"embeddings": embeddings}
    print(RESULT_MARKER + json.dumps({"n": len(embeddings)}), flush=True)  # benchmark timing only
    return output


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler})
