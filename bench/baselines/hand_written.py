"""The embeddings worker a user writes by hand: `SentenceTransformer(snapshot)` + `runpod.serverless.start`.

The fair comparison for volcache's warm start (issue 16): the model is already on the volume, it
is loaded from its snapshot folder (no Hub request), and served by RunPod's SDK in its
`--test_input` mode, as `python -m volcache.worker --test_input` is. The snapshot comes from
``BENCH_SNAPSHOT`` (the benchmark points it at the snapshot volcache's own run left on its volume).
"""

from __future__ import annotations

import json
import os

import runpod
from sentence_transformers import SentenceTransformer

RESULT_MARKER = "bench: result "

model = SentenceTransformer(os.environ["BENCH_SNAPSHOT"], local_files_only=True)


def handler(job: dict) -> dict:  # type: ignore[type-arg]
    embeddings = model.encode(job["input"]["input"], normalize_embeddings=True).tolist()
    print(RESULT_MARKER + json.dumps({"n": len(embeddings)}), flush=True)  # benchmark timing only
    return {"embeddings": embeddings}


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler})
