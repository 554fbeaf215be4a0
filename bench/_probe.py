"""Measurements that run in a fresh child process and print one ``bench: result {json}`` line.

    python -m bench._probe floor SNAPSHOT          # imports + parallel read + build + one forward pass
    python -m bench._probe read FILE... --threads 8 # the best parallel read: N threads, 16 MiB chunks
    python -m bench._probe load SNAPSHOT --strategy auto --warm TINY_SNAPSHOT [--device cuda]
    python -m bench._probe to-device FILE... --threads 16 --device cuda  # parallel read + host→device copy

`floor` is the cold-start floor for the embeddings model: the imports an embeddings result
needs (torch, sentence-transformers), the weight bytes read in parallel, the model built from the
page cache and one forward pass, one after the other with nothing else; after its result line it
times `import runpod` (what a RunPod worker must add) and prints that on a second line. `load` loads a model
through volcache's own `load_model` with ``VOLCACHE_LOAD=strategy`` after a first load of a tiny
model of the same architecture (so the library code is imported and warm), then runs one forward
pass and touches every weight byte, as copying to a GPU would (with ``--device cuda`` the weights
are loaded onto the GPU and every parameter is summed there, synchronised). `to-device` is the
floor of that: the best parallel read of the same bytes, then one copy of each file to the device.
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


class PeakHostMemory:
    """The peak of this process's anonymous resident memory (`RssAnon`) while it runs, sampled every 5 ms.

    Anonymous memory is what a load copies into the process (tensors built on the host, a file read
    whole); page-cache pages mapped from the weight files are not counted, since they are the
    kernel's and shared. `peak - start` is the host copy a load made on its way to the device.
    """

    def __init__(self) -> None:
        import threading

        self.start = self.peak = _rss_anon()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakHostMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_anon())

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_anon())

    @property
    def grown(self) -> int:
        return max(0, self.peak - self.start)


def _rss_anon() -> int:
    """Bytes of anonymous resident memory (Linux /proc/self/status); 0 where it cannot be read."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def floor(snapshot: Path, threads: int) -> None:
    from volcache.store.loading import Prefetch, weight_files

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
    from volcache.store.loading import Prefetch

    began = time.perf_counter()
    prefetch = Prefetch(files, threads=threads, chunk=chunk).start().wait()
    _emit({"seconds": time.perf_counter() - began, "bytes": prefetch.bytes_read, "threads": threads})


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def to_device(files: list[Path], threads: int, device: str) -> None:
    import mmap

    import torch

    from volcache.store.loading import Prefetch

    torch.zeros(1, device=device)  # the device's context is up before the clock starts
    _sync(device)
    began = time.perf_counter()
    with PeakHostMemory() as memory:
        prefetch = Prefetch(files, threads=threads).start().wait()
        read = time.perf_counter()
        for path in files:
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
                host = torch.frombuffer(mapped, dtype=torch.uint8)  # the page cache's bytes, not a copy
                on_device = host.to(device)
                _sync(device)
                del host, on_device
    done = time.perf_counter()
    _emit(
        {
            "seconds": done - began,
            "read": read - began,
            "bytes": prefetch.bytes_read,
            "threads": threads,
            "host_peak_bytes": memory.grown,
        }
    )


def load(snapshot: Path, strategy: str, warm: Path, task: str, device: str = "cpu") -> None:
    import torch

    from volcache import Settings
    from volcache.store.loading import Prefetch, weight_files
    from volcache.worker._load import load_model

    wait_first = strategy == "prefetch-wait"
    settings = Settings(load="mmap" if wait_first else strategy, device=device)  # type: ignore[arg-type]
    load_model(warm, task, Settings(load="mmap", device=device))  # imports and warms the library's code paths
    _sync(device)
    began = time.perf_counter()
    with PeakHostMemory() as memory:
        if wait_first:  # the variant that waits for the whole prefetch before building the model
            Prefetch(weight_files(snapshot)).start().wait()
        loaded = load_model(snapshot, task, settings)
        _sync(device)
    built = time.perf_counter()
    pipe = getattr(loaded, "pipe", None)
    model = pipe.model if pipe is not None else getattr(loaded, "model", None)
    with torch.no_grad():
        if pipe is not None:
            pipe(SENTENCES[0])
        forward = time.perf_counter()
        checksum = sum(float(p.float().sum()) for p in model.parameters())
        _sync(device)
    touched = time.perf_counter()
    _emit(
        {
            "strategy": strategy,
            "device": str(next(model.parameters()).device),
            "load": built - began,
            "forward": forward - began,
            "all_bytes": touched - began,
            "checksum": checksum,
            "host_peak_bytes": memory.grown,
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
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("to-device")
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.what == "floor":
        floor(args.snapshot, args.threads)
    elif args.what == "read":
        read(args.files, args.threads, args.chunk)
    elif args.what == "to-device":
        to_device(args.files, args.threads, args.device)
    else:
        load(args.snapshot, args.strategy, args.warm, args.task, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
