"""Load strategies onto a GPU: the `netfs` measurements with the weights ending on the device.

    python -m bench gpu            # needs a CUDA device; without one the section says so and is skipped
    python -m bench gpu --quick    # 1 round, a 38 MB model, the local disk and one latency

Each volume (the local disk, then the simulated network volume of `bench.netfs` at each latency
in `LATENCIES` where FUSE can be mounted) gets every strategy in a fresh process, page cache
evicted, library code and the device's context warm (a tiny model of the same architecture is
loaded onto the device first). A run stops when every weight is on the device (`load_model` with
`device=cuda`, then a sum of every parameter there, synchronised); a forward pass comes first.
The floor is the best parallel read of the same bytes followed by one host→device copy of each
file (`bench._probe to-device`). The card's name, torch and CUDA versions head the table.

It is the script the benchmark issue asks for "where a GPU is available": on a machine without
one, `run(opts, device="cpu")` exercises the same harness on the CPU (the test suite does).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

from . import _fuse, netfs
from ._common import (
    Options,
    Section,
    Summary,
    bar_plot,
    child_env,
    evict,
    mb,
    python,
    ratio,
    run_timed,
    table,
    write_hub_snapshot,
)

STRATEGIES = ("mmap", "read", "auto")
FLOOR_THREADS = (8, 16)
LATENCIES = (0.001, 0.004)  # seconds per read request on the simulated network volume
MARKER = "bench: result "


def device_facts(device: str) -> dict[str, Any]:
    """What a child process sees of `device`: available, its name, torch's and CUDA's versions."""
    code = (
        "import json, torch\n"
        f"d = {device!r}\n"
        "n = torch.cuda.device_count() if d.startswith('cuda') and torch.cuda.is_available() else 0\n"
        "ok = d == 'cpu' or (n > 0 and (torch.device(d).index or 0) < n)\n"
        "name = torch.cuda.get_device_name(torch.device(d)) if ok and d.startswith('cuda') else d\n"
        "print(json.dumps({'available': ok, 'name': name, 'torch': torch.__version__, 'cuda': torch.version.cuda}))\n"
    )
    proc = subprocess.run([python(), "-c", code], env=child_env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"available": False, "name": None, "error": proc.stderr.strip().splitlines()[-1:]}
    facts: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return facts


def run(
    opts: Options,
    *,
    device: str = "cuda",
    hidden: int | None = None,
    layers: int | None = None,
    latencies: tuple[float, ...] | None = None,
    strategies: tuple[str, ...] = STRATEGIES,
) -> Section:
    facts = device_facts(device)
    if not facts.get("available"):
        reason = f"no {device} device here (torch {facts.get('torch', '?')}, CUDA {facts.get('cuda')})"
        return Section("gpu", f"## Load onto a GPU\n\nSkipped: {reason}.\n", {"skipped": reason, "device": facts})
    hidden = hidden or (256 if opts.quick else 1024)
    layers = layers or (2 if opts.quick else 8)
    if latencies is None:
        latencies = LATENCIES[:1] if opts.quick else LATENCIES
    fuse_reason = _fuse.available()
    results: dict[str, Any] = {"device": facts, "target": device, "volumes": {}, "fuse_skipped": fuse_reason}
    with opts.workdir("gpu") as tmp:
        work = Path(tmp)
        model_dir, tiny_dir = work / "model", work / "tiny"
        for dest, h, n in ((model_dir, hidden, layers), (tiny_dir, 32, 1)):
            made = subprocess.run(
                [python(), "-m", "bench._models", str(dest), "--hidden", str(h), "--layers", str(n)],
                env=child_env(HF_HUB_OFFLINE="1"),
                capture_output=True,
                text=True,
                check=False,
            )
            if made.returncode != 0:
                raise RuntimeError(made.stderr[-3000:])
        results["model_bytes"] = (model_dir / "model.safetensors").stat().st_size
        backing = work / "backing"
        local = write_hub_snapshot(backing / "hub", netfs.REPO, {p.name: p for p in model_dir.iterdir() if p.is_file()})
        tiny = write_hub_snapshot(work / "tiny-hub", "bench/tiny-bert", {p.name: p for p in tiny_dir.iterdir()})
        backing_files = netfs._weights(local)
        results["volumes"]["local disk"] = _measure(
            local, tiny, device, strategies, opts.repeats, lambda: evict(backing_files)
        )
        if fuse_reason is None:
            for latency in latencies:
                volume = netfs.NetworkVolume(latency=latency)
                with netfs.mounted(backing, work / "mnt", volume, work):
                    snapshot = work / "mnt" / local.relative_to(backing)

                    def cold(snapshot: Path = snapshot) -> None:
                        evict(netfs._weights(snapshot))
                        evict(backing_files)

                    name = f"network volume, +{latency * 1e3:.0f} ms per request"
                    results["volumes"][name] = _measure(snapshot, tiny, device, strategies, opts.repeats, cold)
                    results.setdefault("network_volumes", {})[name] = dataclasses.asdict(volume)
    return _section(opts, results, strategies)


def _measure(
    snapshot: Path, tiny: Path, device: str, strategies: tuple[str, ...], repeats: int, cold: Any
) -> dict[str, list[dict[str, Any]]]:
    """Every floor configuration and strategy once per round, interleaved, `repeats` rounds."""
    runs: dict[str, list[dict[str, Any]]] = {}
    env = child_env(HF_HUB_OFFLINE="1")
    files = [str(p) for p in netfs._weights(snapshot)]
    for _ in range(repeats):
        probe = [python(), "-m", "bench._probe"]
        jobs = [(f"floor-{n}", [*probe, "to-device", *files, "--threads", str(n)]) for n in FLOOR_THREADS]
        jobs += [(s, [*probe, "load", str(snapshot), "--strategy", s, "--warm", str(tiny)]) for s in strategies]
        for name, command in jobs:
            cold()
            result = run_timed([*command, "--device", device], env, MARKER, timeout=900).check()
            runs.setdefault(name, []).append(result.json_after(MARKER))
    return runs


def render(opts: Options, data: dict[str, Any]) -> Section:
    """The section again from its JSON (`python -m bench --render`), without measuring."""
    if "skipped" in data:
        return Section("gpu", f"## Load onto a GPU\n\nSkipped: {data['skipped']}.\n", data)
    strategies = tuple(s for s in STRATEGIES if any(s in runs for runs in data["volumes"].values()))
    return _section(opts, data, strategies)


def _peak(runs: list[dict[str, Any]]) -> str:
    """The median growth of anonymous host memory during the load (`_probe.PeakHostMemory`)."""
    values = [float(r["host_peak_bytes"]) for r in runs if "host_peak_bytes" in r]
    return mb(int(Summary.of(values).median)) if values else "–"


def _section(opts: Options, results: dict[str, Any], strategies: tuple[str, ...]) -> Section:
    facts = results["device"]
    where = f"`{results['target']}`: {facts.get('name')}, torch {facts.get('torch')}, CUDA {facts.get('cuda')}"
    lines = [
        "## Load onto a GPU",
        "",
        f"Device {where}. Model: random-weight BERT, {mb(results['model_bytes'])} of float32 safetensors. "
        "Page cache evicted before each run; library code and the device warm. *Load → every weight on the "
        "device* ends when every parameter has been summed on the device (synchronised); the floor is the best "
        f"parallel read of the same bytes, then one host→device copy per file. *Peak host memory* is how much "
        "the process's anonymous memory grew during the load (tensors built on the host, a file read whole; the "
        "page cache's mapped pages are not counted): with the weights placed on the device as they are read "
        f"(`device_map`) it stays far below the model's size. {opts.repeats} rounds, interleaved; median (min–max).",
        "",
    ]
    if results.get("fuse_skipped"):
        lines += [f"The simulated network volume was skipped: {results['fuse_skipped']}.", ""]
    heads = [
        "strategy",
        "load → every weight on the device",
        "÷ floor",
        "load + first forward pass",
        "peak host memory during the load",
    ]
    series: dict[str, list[Summary | None]] = {}
    verdicts: dict[str, dict[str, float]] = {}
    for volume, runs in results["volumes"].items():
        floors = {n: Summary.of(float(r["seconds"]) for r in rs) for n, rs in runs.items() if n.startswith("floor-")}
        best = min(floors, key=lambda n: floors[n].median)
        floor = floors[best]
        rows = [
            [f"floor: parallel read, {n.split('-')[1]} threads, then copy" + (" (best)" if n == best else ""),
             f.seconds(), ratio(f.median, floor.median), "–", _peak(runs[n])]
            for n, f in floors.items()
        ]  # fmt: skip
        column: list[Summary | None] = [floor]
        for s in strategies:
            every = Summary.of(float(r["all_bytes"]) for r in runs[s])
            forward = Summary.of(float(r["forward"]) for r in runs[s])
            label = netfs.LABELS.get(s, s)
            rows.append([label, every.seconds(), ratio(every.median, floor.median), forward.seconds(), _peak(runs[s])])
            column.append(every)
        series[volume] = column
        if "auto" in runs:
            auto = Summary.of(float(r["all_bytes"]) for r in runs["auto"]).median
            verdicts[volume] = {"auto_over_floor": auto / floor.median}
            if "mmap" in runs:
                mmap = Summary.of(float(r["all_bytes"]) for r in runs["mmap"]).median
                verdicts[volume]["mmap_over_auto"] = mmap / auto
        lines += [f"**{volume}**", "", table(heads, rows), ""]
    for volume, v in verdicts.items():
        text = f"`auto` {v['auto_over_floor']:.2f}× the floor"
        if "mmap_over_auto" in v:
            text += f", {v['mmap_over_auto']:.2f}× faster than `mmap`"
        lines.append(f"- {volume}: {text}.")
    results["verdicts"] = verdicts
    plots = []
    plot = bar_plot(
        opts.out / "gpu.png",
        f"Load of {mb(results['model_bytes'])} onto {facts.get('name')} (cold page cache)",
        ["floor", *strategies],
        series,
    )
    if plot:
        plots.append(plot)
        lines += ["", "![load onto a GPU](gpu.png)"]
    return Section("gpu", "\n".join(lines), results, plots)
