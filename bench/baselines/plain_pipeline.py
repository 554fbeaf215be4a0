"""Plain transformers: ``pipeline(task, model=model_id)`` with the Hugging Face cache on the volume.

What a user writes without volcache: ``HF_HOME`` on the volume, the model by repo id (so the Hub
is asked on every start), the default (memory-mapped) loading. ``python -m
bench.baselines.plain_pipeline MODEL [TASK]`` prints one ``bench: result`` line and exits.
``TASK`` defaults to ``feature-extraction``: `pipeline(model_id)` alone asks the Hub for the
model's pipeline tag, which the offline Hub emulator does not serve.
"""

from __future__ import annotations

import json
import sys

from transformers import pipeline

SENTENCES = ["A cat is sleeping on the sofa.", "A kitten naps on the couch.", "The stock market fell sharply today."]


def main() -> None:
    model_id = sys.argv[1]
    task = sys.argv[2] if len(sys.argv) > 2 else "feature-extraction"
    pipe = pipeline(task, model=model_id)
    result = pipe(SENTENCES)
    print("bench: result " + json.dumps({"n": len(result)}), flush=True)


if __name__ == "__main__":
    main()
