"""Measurements that run in a fresh child process and print one ``bench: result {json}`` line.

    python -m bench._probe floor SNAPSHOT          # imports + parallel read + build + one forward pass
    python -m bench._probe read FILE... --threads 8 # the best parallel read: N threads, 16 MiB chunks
    python -m bench._probe load SNAPSHOT --strategy auto --warm TINY_SNAPSHOT

`floor` is the cold-start floor for the embeddings model: the imports an embeddings result
needs (torch, sentence-transformers), the weight bytes read in parallel, the model built from the
page cache and one forward pass, one after the other with nothing else; after its result line it
times `import runpod` (what a RunPod worker must add) and prints that on a second line. `load` loads a model
through volcache's own `load_model` with ``VOLCACHE_LOAD=strategy`` after a first load of a tiny
model of the same architecture (so the library code is imported and warm), then runs one forward
pass and touches every weight byte, as copying to a GPU would.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

T0 = time.perf_counter()
MARKER = "bench: result "
RUNPOD_MARKER = "bench: runpod "
SENTENCES = ["A cat is sleeping on the sofa.", "A kitten naps on the couch.", "The stock market fell sharply today."]


def _emit(data: dict[str, object]) -> None:
    print(MARKER + json.dumps(data), flush=True)


def floor(snapshot: Path, threads: int) -> None:
    from volcache._loading import Prefetch, weight_files

    began = time.perf_counter()
    import sentence_transformers
    import torch  # noqa: F401 - imported by sentence-transformers already; named for clarity

    imported = time.perf_counter()
    prefetch = Prefetch(weight_files(snapshot), threads=threads).start().wait()
    read = time.perf_counter()
    model = sentence_transformers.SentenceTransformer(str(snapshot), device="cpu", local_files_only=True)
    built = time.perf_counter()
    model.encode(SENTENCES, normalize_embeddings=True)
    done = time.perf_counter()
    _emit(
        {
            "before_import": began - T0,
            "import": imported - began,
            "read": read - imported,
            "read_bytes": prefetch.bytes_read,
            "construct": built - read,
            "forward": done - built,
            "in_process": done - T0,
        }
    )
    import runpod  # noqa: F401 - not part of the floor: what a RunPod worker adds to it, timed after

    print(RUNPOD_MARKER + json.dumps({"runpod_import": time.perf_counter() - done}), flush=True)


def read(files: list[Path], threads: int, chunk: int) -> None:
    from volcache._loading import Prefetch

    began = time.perf_counter()
    prefetch = Prefetch(files, threads=threads, chunk=chunk).start().wait()
    _emit({"seconds": time.perf_counter() - began, "bytes": prefetch.bytes_read, "threads": threads})


def load(snapshot: Path, strategy: str, warm: Path, task: str) -> None:
    import torch

    from volcache import Settings
    from volcache._loading import Prefetch, weight_files
    from volcache.worker._load import load_model

    wait_first = strategy == "prefetch-wait"
    settings = Settings(load="mmap" if wait_first else strategy, device="cpu")  # type: ignore[arg-type]
    load_model(warm, task, Settings(load="mmap", device="cpu"))  # imports and warms the library's code paths
    began = time.perf_counter()
    if wait_first:  # the variant that waits for the whole prefetch before building the model
        Prefetch(weight_files(snapshot)).start().wait()
    loaded = load_model(snapshot, task, settings)
    built = time.perf_counter()
    pipe = getattr(loaded, "pipe", None)
    model = pipe.model if pipe is not None else getattr(loaded, "model", None)
    with torch.no_grad():
        if pipe is not None:
            pipe(SENTENCES[0])
        forward = time.perf_counter()
        checksum = sum(float(p.float().sum()) for p in model.parameters())
    touched = time.perf_counter()
    _emit(
        {
            "strategy": strategy,
            "load": built - began,
            "forward": forward - began,
            "all_bytes": touched - began,
            "checksum": checksum,
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._probe")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("floor")
    p.add_argument("snapshot", type=Path)
    p.add_argument("--threads", type=int, default=8)
    p = sub.add_parser("read")
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--chunk", type=int, default=16 * 1024 * 1024)
    p = sub.add_parser("load")
    p.add_argument("snapshot", type=Path)
    p.add_argument("--strategy", required=True, choices=["auto", "mmap", "read", "prefetch", "prefetch-wait"])
    p.add_argument("--warm", type=Path, required=True)
    p.add_argument("--task", default="feature-extraction")
    args = parser.parse_args(argv)
    if args.what == "floor":
        floor(args.snapshot, args.threads)
    elif args.what == "read":
        read(args.files, args.threads, args.chunk)
    else:
        load(args.snapshot, args.strategy, args.warm, args.task)
    return 0


if __name__ == "__main__":
    sys.exit(main())
