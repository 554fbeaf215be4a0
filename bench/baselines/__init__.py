"""What volcache is measured against: the seed's two workers and a plain `transformers.pipeline`.

- `seed_before`: the seed's "before" (seed/runpod-volume-fix.md): weights downloaded at build time
  into /tmp/models, then `shutil.copytree`'d onto the volume at start;
- `seed_after`: the seed's "after" handler: cache variables on the volume, stale /tmp/models
  deleted, the model loaded by repo id, served with `runpod.serverless.start`;
- `plain_pipeline`: `transformers.pipeline(task, model=model_id)` with the cache on the volume;
- `hand_written`: `SentenceTransformer(snapshot)` + `runpod.serverless.start`, loading the snapshot
  folder already on the volume (the warm start volcache's lean embeddings path is measured against).

Each is written as its author would run it; the only additions are paths the benchmark sets
(the volume and /tmp/models live in temporary folders) and one `bench: result {json}` line
printed with the first result, which is how the benchmark times "process start → first result".

They copy (`seed_before`) and delete (`seed_after`) whole caches, as the seed did, so they run only
on the benchmark's own temporary folders: `bench_paths()` refuses anything else.
"""

from __future__ import annotations

import os
from pathlib import Path

WORKDIR_PREFIX = "volcache-bench-"  # `Options.workdir`'s temporary folders


def bench_paths() -> tuple[str, str]:
    """(volume cache, build cache) from BENCH_VOLUME_CACHE and BENCH_BUILD_CACHE, both inside one of
    the benchmark's temporary folders (`volcache-bench-*`); else exit with one line. The seed's
    defaults (/runpod-volume/models, /tmp/models) would copy into, or delete from, a real volume."""
    paths = []
    for name in ("BENCH_VOLUME_CACHE", "BENCH_BUILD_CACHE"):
        value = os.environ.get(name, "")
        if not value:
            raise SystemExit(f"bench baseline: {name} is not set; the benchmark sets it to a temporary folder.")
        if not any(parent.name.startswith(WORKDIR_PREFIX) for parent in Path(value).resolve().parents):
            raise SystemExit(
                f"bench baseline: {name}={value} is not inside a benchmark folder ({WORKDIR_PREFIX}*); "
                "refusing to copy or delete caches there."
            )
        paths.append(value)
    return paths[0], paths[1]
