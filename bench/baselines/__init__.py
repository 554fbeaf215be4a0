"""What volcache is measured against: the seed's two workers and a plain `transformers.pipeline`.

- `seed_before`: the seed's "before" (seed/runpod-volume-fix.md): weights downloaded at build time
  into /tmp/models, then `shutil.copytree`'d onto the volume at start;
- `seed_after`: the seed's "after" handler: cache variables on the volume, stale /tmp/models
  deleted, the model loaded by repo id, served with `runpod.serverless.start`;
- `plain_pipeline`: `transformers.pipeline(task, model=model_id)` with the cache on the volume.

Each is written as its author would run it; the only additions are paths the benchmark sets
(the volume and /tmp/models live in temporary folders) and one `bench: result {json}` line
printed with the first result, which is how the benchmark times "process start → first result".
"""
