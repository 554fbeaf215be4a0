"""`make bench` (`python -m bench`): volcache's benchmark suite; tables on stdout and in bench/results/.

    python -m bench                      # every section, 3 rounds each (about 15 minutes on 2 cores)
    python -m bench --quick              # a smoke run: 1 round, a small model on the network volume
    python -m bench disk scale           # only these sections
    python -m bench --repeats 5 --out /tmp/results
    python -m bench --render             # tables and plots again from bench/results/*.json, no measuring

Sections (each a module of this package): `disk` (weight bytes on all disks ÷ model bytes),
`cold_start` (process start → first result, beside the seed and plain transformers and the
floor), `netfs` (load strategies on a simulated network volume, a FUSE mount), `gpu` (the same
loads onto a CUDA device; skipped without one), `scale` (N workers on an empty volume: Hub
bytes and wall time; one worker's first download beside `hf download`), `images` (a diffusers
pipeline: process start → first image, `auto` vs `mmap`). Each writes `<section>.md`, `<section>.json` and
a PNG plot to the output folder; `summary.md` gathers the tables. `vllm` (tokens/s of the vLLM
engine against the transformers engine at 1, 8 and 32 requests at once) and `vllm_netfs` (vLLM's
weight load on the simulated network volume, its strategies against volcache's prefetch) need `.venv-vllm`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from . import cold_start, disk, gpu, images, netfs, scale, vllm
from ._common import RESULTS, Options

SECTIONS = {
    "disk": disk.run,
    "cold_start": cold_start.run,
    "netfs": netfs.run,
    "gpu": gpu.run,
    "scale": scale.run,
    "images": images.run,
    "vllm": vllm.run,
    "vllm_netfs": vllm.run_netfs,
}
RENDER = {
    "disk": disk.render,
    "cold_start": cold_start.render,
    "netfs": netfs.render,
    "gpu": gpu.render,
    "scale": scale.render,
    "images": images.render,
    "vllm": vllm.render,
    "vllm_netfs": vllm.render_netfs,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", help=f"sections to run: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round and small models")
    parser.add_argument("--repeats", type=int, help="rounds per measurement (default 3, 1 with --quick)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where tables and plots go (bench/results)")
    parser.add_argument("--hub-bandwidth", type=float, default=100e6, help="bytes/s per Hub download stream")
    parser.add_argument(
        "--hub-link", type=float, default=400e6, help="bytes/s of all Hub streams together (first download)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument("--render", action="store_true", help="rewrite tables and plots from the JSON in --out")
    args = parser.parse_args(argv)
    unknown = [n for n in args.sections if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    names = [n for n in SECTIONS if n in args.sections] if args.sections else list(SECTIONS)
    repeats = args.repeats or (1 if args.quick else 3)
    opts = Options(
        quick=args.quick,
        repeats=repeats,
        out=args.out,
        keep=args.keep,
        hub_bandwidth=args.hub_bandwidth,
        hub_link=args.hub_link,
    )
    began = time.perf_counter()
    for name in names:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        if args.render:
            saved = json.loads((opts.out / f"{name}.json").read_text(encoding="utf-8"))
            section = RENDER[name](opts, saved)
            section.data["seconds"] = saved.get("seconds", 0.0)
        else:
            section = SECTIONS[name](opts)
            section.data["seconds"] = time.perf_counter() - t
        section.write(opts.out)
        print(section.markdown + "\n", flush=True)
        print(f"bench: {name} took {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    if not args.render:
        _write_summary(opts, time.perf_counter() - began)
    else:
        _write_summary(opts, sum(json.loads((opts.out / f"{n}.json").read_text())["seconds"] for n in names))
    print(f"bench: done in {time.perf_counter() - began:.0f} s; results in {opts.out}", file=sys.stderr)
    return 0


def _write_summary(opts: Options, seconds: float) -> None:
    """`summary.md`: the machine, then every section's table found in the output folder, in order."""
    versions = ", ".join(f"{p} {_version(p)}" for p in ("torch", "transformers", "sentence-transformers", "runpod"))
    head = [
        "# volcache benchmark results",
        "",
        f"`python -m bench` on {platform.machine()}, {_cpus()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}, {versions}; {_gpu(opts.out)}. Written "
        f"{datetime.date.today().isoformat()}, the last run taking {seconds / 60:.1f} minutes. The machine is "
        "shared, so timings are noisy: compare within a table (side by side, same rounds), not across runs.",
        "",
    ]
    parts = [(opts.out / f"{name}.md") for name in SECTIONS]
    body = [p.read_text(encoding="utf-8").rstrip() + "\n" for p in parts if p.exists()]
    (opts.out / "summary.md").write_text("\n".join(head + body), encoding="utf-8")


def _gpu(out: Path) -> str:
    """The GPU the `gpu` section used, from its JSON; else that there was none."""
    try:
        data = json.loads((out / "gpu.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if "skipped" in data or not data:
        return "CPU only (no GPU on this machine)"
    return f"GPU: {data.get('device', {}).get('name')}"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
