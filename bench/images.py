"""Image models: process start → first image, for a tiny diffusers pipeline and one of realistic read size.

Both pipelines are random Stable Diffusion-style ones built at run time
(`volcache.testing.models.build_tiny_sd_pipeline`): the tiny one (~5 MB, what the tests use) and
one whose UNet has 320/640 channels (~385 MB of float32 weights, so the read matters). They sit
in the Hugging Face cache layout; each run is `python -m volcache.worker --test_input` with a
64×64, 2-step job, from the start of the process to the result line, with the page cache
evicted first. Measured on the local disk and on the simulated network volume
(`bench/_fuse.py`, as in the `netfs` section) at +1 ms per request (and +4 ms for the
realistic pipeline), with `VOLCACHE_LOAD=auto` and `mmap`.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

from . import _fuse
from ._common import Options, Section, Summary, child_env, evict, mb, python, ratio, regular_files, run_timed, table
from .netfs import NetworkVolume, _fuse_counts, mounted

PIPELINES = {"tiny": 32, "realistic": 320}  # the UNet's first channel count
QUICK_PIPELINES = {"tiny": 32, "realistic": 128}
LOADS = ("auto", "mmap")
LATENCIES = (0.001, 0.004)  # per read request; the realistic pipeline only at the second
JOB = {"prompt": "a lighthouse at dawn", "width": 64, "height": 64, "num_inference_steps": 2, "seed": 1}
_BUILD = (
    "import sys; from volcache.testing.models import build_tiny_sd_pipeline as build; "
    "build(sys.argv[1], variant_fp16=False, width=int(sys.argv[2]))"
)


def run(opts: Options) -> Section:
    from ._common import write_hub_snapshot

    widths = QUICK_PIPELINES if opts.quick else PIPELINES
    volume = NetworkVolume()
    results: dict[str, Any] = {"volume": volume.describe(), "pipelines": {}, "runs": []}
    with opts.workdir("images") as tmp:
        work = Path(tmp)
        snapshots: dict[str, Path] = {}
        for name, width in widths.items():
            folder = work / "built" / name
            made = subprocess.run(
                [python(), "-c", _BUILD, str(folder), str(width)],
                env=child_env(HF_HUB_OFFLINE="1", HOME=str(work / "home")),
                capture_output=True,
                text=True,
                check=False,
            )
            if made.returncode != 0:
                raise RuntimeError(made.stderr[-3000:])
            files = {str(p.relative_to(folder)): p for p in folder.rglob("*") if p.is_file()}
            snapshots[name] = write_hub_snapshot(work / "backing" / "hub", f"bench/{name}-sd", files)
            results["pipelines"][name] = sum(p.stat().st_size for p in files.values() if p.suffix == ".safetensors")
        backing = list(regular_files(work / "backing"))
        for _ in range(opts.repeats):
            for name, snapshot in snapshots.items():
                for load in LOADS if name == "realistic" else ("auto",):
                    results["runs"].append(_one(work, name, "local disk", load, snapshot, backing, None))
        reason = _fuse.available()
        results["fuse_skipped"] = reason
        for latency in LATENCIES if reason is None else ():
            disk = f"network volume, +{latency * 1e3:.0f} ms"
            names = list(snapshots) if latency == volume.latency else ["realistic"]
            with mounted(work / "backing", work / "mnt", dataclasses.replace(volume, latency=latency), work) as stats:
                # The mount keeps its own page cache (FOPEN_KEEP_CACHE): its files are evicted too.
                on_mount = [*backing, *regular_files(work / "mnt")]
                for _ in range(opts.repeats):
                    for name in names:
                        on_fuse = work / "mnt" / snapshots[name].relative_to(work / "backing")
                        for load in LOADS:
                            results["runs"].append(_one(work, name, disk, load, on_fuse, on_mount, stats))
    return _section(results)


def _one(
    work: Path, name: str, disk: str, load: str, snapshot: Path, cached: list[Path], stats: Path | None
) -> dict[str, Any]:
    """One worker process, the `cached` files evicted: seconds to the first image and the start-up line's split."""
    from volcache.worker import RESULT_PREFIX, STARTED_PREFIX

    evict(cached)
    env = child_env(
        MODEL_NAME=str(snapshot),
        VOLCACHE_LOAD=load,
        VOLCACHE_VOLUME=str(work / "worker-volume"),
        VOLCACHE_EPHEMERAL=str(work / "worker-ephemeral"),
        VOLCACHE_STALE_CACHES="",
        VOLCACHE_FREE_MARGIN="0",
        VOLCACHE_DEVICE="cpu",
        HOME=str(work / "home"),
        RUNPOD_DEBUG_LEVEL="WARN",
    )
    before = _fuse_counts(stats) if stats is not None else None
    command = [python(), "-m", "volcache.worker", "--test_input", json.dumps({"input": JOB})]
    result = run_timed(command, env, RESULT_PREFIX, timeout=900).check()
    output = result.json_after(RESULT_PREFIX)
    if "images" not in output:
        raise RuntimeError(f"the worker answered {str(output)[:500]}")
    started = result.json_after(STARTED_PREFIX)
    entry: dict[str, Any] = {
        "pipeline": name,
        "disk": disk,
        "load": load,
        "chosen": started["load"],
        "seconds": result.seconds_to_result,
        "load_s": started["timings_s"].get("load"),
        "import_s": started.get("load_s", {}).get("import"),
        "construct_s": started.get("load_s", {}).get("construct"),
        "prefetch_wait_s": started.get("load_s", {}).get("prefetch_wait"),
        "warmup_s": started["timings_s"].get("warmup"),
    }
    if stats is not None and before is not None:
        entry["requests"] = _fuse_counts(stats)["reads"] - before["reads"]
    return entry


def render(opts: Options, data: dict[str, Any]) -> Section:
    return _section(data)


def _section(results: dict[str, Any]) -> Section:
    runs: list[dict[str, Any]] = results["runs"]
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["pipeline"], r["disk"], r["load"]), []).append(r)

    def summary(key: tuple[str, str, str], field: str) -> Summary:
        return Summary.of(float(r[field]) for r in groups.get(key, []) if r.get(field) is not None)

    rows = []
    for (name, disk, load), items in groups.items():
        mmap = summary((name, disk, "mmap"), "seconds").median
        seconds = summary((name, disk, load), "seconds")
        vs_mmap = ratio(mmap, seconds.median) if load != "mmap" and (name, disk, "mmap") in groups else "–"
        requests = [r["requests"] for r in items if "requests" in r]
        rows.append(
            [
                f"{name} ({mb(results['pipelines'][name])})",
                disk,
                f"`{load}`" + (f" → {items[0]['chosen']}" if load == "auto" else ""),
                seconds.seconds(),
                summary((name, disk, load), "load_s").seconds(),
                summary((name, disk, load), "construct_s").seconds(),
                summary((name, disk, load), "warmup_s").seconds(),
                vs_mmap,
                str(int(Summary.of(requests).median)) if requests else "–",
            ]
        )
    headers = ["pipeline (weights)", "disk", "VOLCACHE_LOAD", "process start → first image", "load", "of it: build"]
    headers += ["warm-up"]
    headers += ["faster than mmap", "read requests"]
    lines = ["## Image models: process start → first image", "", table(headers, rows), ""]
    lines.append(
        f"A 64×64, 2-step job through `python -m volcache.worker --test_input`, CPU, page cache evicted before each "
        f"run (the mount's own too). `load` is the start-up line's phase (importing torch, transformers and "
        f"diffusers, building the pipeline, waiting for the prefetch); `build` is `DiffusionPipeline.from_pretrained`. "
        f"The network volume (latency per request as in the disk column): {results['volume']}."
    )
    if results.get("fuse_skipped"):
        lines.append(f"The network volume was skipped: {results['fuse_skipped']}.")
    return Section("images", "\n".join(lines), results)
