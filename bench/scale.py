"""Scale: N workers start together on an empty volume; what the Hub serves and how long it takes.

Each worker is a `volcache fetch` process (the store's start-up step, without loading the model)
with its own container disk; all share one volume folder and the offline Hub emulator, whose
download streams are capped (`Options.hub_bandwidth`). The store's lease lets one worker
download while the others wait and then reuse its copy, so the Hub serves the model once.

First download (`first_download`): one worker on an empty volume, the emulator's streams capped at
`STREAM_CAP` each and all together at `Options.hub_link` (the link). `hf download` of the repo
(huggingface_hub's own CLI: one stream per file, up to 8 files at once) beside `volcache fetch` on
one stream per file and on its default streams per file (store/ranged.py), each from a fresh
machine and volume, in one run, the contenders' order rotating from round to round.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import sys
from pathlib import Path
from typing import Any

from ._common import (
    MINILM,
    Options,
    Section,
    Summary,
    bar_plot,
    check_all,
    child_env,
    mb,
    python,
    start_all,
    table,
)

WORKERS = (1, 2, 4, 8)
STREAM_CAP = 50e6  # bytes/s per download stream in the first-download table (issue 16)
HF_DOWNLOAD, VOLCACHE_ONE, VOLCACHE_MANY = "hf download", "volcache fetch, 1 stream per file", "volcache fetch"
CONTENDERS = (HF_DOWNLOAD, VOLCACHE_ONE, VOLCACHE_MANY)
# (repo, files): a real single-file model, a large single-file checkpoint, a sharded one
BIG_SINGLE, BIG_SHARDED = "bench/single-300mb", "bench/sharded-4x75mb"


def run(opts: Options, *, workers: tuple[int, ...] | None = None, model: str = MINILM) -> Section:
    from volcache.testing.hub import Faults, HubEmulator, minilm_folder, mirror_root_with

    workers = workers or ((1, 2) if opts.quick else WORKERS)
    rows: dict[int, list[dict[str, Any]]] = {}
    with opts.workdir("scale") as tmp:
        work = Path(tmp)
        root = mirror_root_with(work, {MINILM: minilm_folder()})
        with HubEmulator(root, faults=Faults(bandwidth=int(opts.hub_bandwidth))) as hub:
            model_bytes = 0
            for _ in range(opts.repeats):
                for n in workers:
                    volume = work / "volume"
                    shutil.rmtree(volume, ignore_errors=True)
                    shutil.rmtree(work / "machines", ignore_errors=True)
                    volume.mkdir()
                    envs = [_env(work / "machines" / str(i), volume, hub.url) for i in range(n)]
                    hub.reset_stats()
                    wall = check_all(start_all([[python(), "-m", "volcache.cli", "fetch", model]] * n, envs))
                    snapshot = next((volume / "models" / "hub").glob("models--*/snapshots/*"))
                    model_bytes = sum(p.stat().st_size for p in snapshot.rglob("*") if p.is_file())
                    weights = _served_times(hub.stats.bytes_per_file, f"{model}/model.safetensors", snapshot)
                    rows.setdefault(n, []).append(
                        {
                            "wall": wall,
                            "hub_bytes": hub.stats.bytes_served,
                            "requests": hub.stats.requests,
                            "weight_downloads": weights,
                            "model_bytes": model_bytes,
                        }
                    )
        first = first_download(opts, work)
    return _section(opts, rows, model_bytes, first)


def _served_times(bytes_per_file: dict[str, int], key: str, snapshot: Path) -> float:
    """How many times the Hub served a file's bytes (parts of one multi-stream download count once)."""
    return bytes_per_file.get(key, 0) / max(1, (snapshot / key.rsplit("/", 1)[-1]).stat().st_size)


def first_download(opts: Options, work: Path) -> dict[str, Any]:
    """One worker on an empty volume: `hf download` vs `volcache fetch` (1 and N streams per file)."""
    from volcache.testing.hub import Faults, HubEmulator, minilm_folder, mirror_root_with

    root = mirror_root_with(work / "first", {MINILM: minilm_folder()})
    models = (MINILM,) if opts.quick else (MINILM, BIG_SINGLE, BIG_SHARDED)
    if not opts.quick:
        _write_checkpoints(root)
    faults = Faults(bandwidth=int(STREAM_CAP), total_bandwidth=int(opts.hub_link))
    runs: dict[str, dict[str, list[dict[str, float]]]] = {m: {c: [] for c in CONTENDERS} for m in models}
    with HubEmulator(root, faults=faults) as hub:
        for r in range(opts.repeats):
            for model in models:
                order = CONTENDERS[r % 3 :] + CONTENDERS[: r % 3]
                for contender in order:
                    machine = work / "first-machine"
                    shutil.rmtree(machine, ignore_errors=True)
                    env = _env(machine, machine / "volume", hub.url)
                    (machine / "volume").mkdir()
                    if contender == VOLCACHE_ONE:
                        env["VOLCACHE_DOWNLOAD_STREAMS"] = "1"
                    command = (
                        [str(Path(sys.executable).with_name("hf")), "download", model, "--quiet"]
                        if contender == HF_DOWNLOAD
                        else [python(), "-m", "volcache.cli", "fetch", model]
                    )
                    env["HF_HOME"] = str(machine / "hf-home")  # hf download's own cache: the container disk
                    hub.reset_stats()
                    before = _cpu()
                    wall = check_all(start_all([command], [env]))
                    client, server = (a - b for a, b in zip(_cpu(), before, strict=True))
                    runs[model][contender].append(
                        {
                            "wall": wall,
                            "hub_bytes": hub.stats.bytes_served,
                            "streams": hub.stats.most_streams,
                            "client_cpu": client,
                            "emulator_cpu": server,
                        }
                    )
    return {"stream_cap": STREAM_CAP, "link": opts.hub_link, "runs": runs}


def _cpu() -> tuple[float, float]:
    """CPU seconds so far of the finished children (the contender) and of this process (the emulator)."""
    children, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    return children.ru_utime + children.ru_stime, me.ru_utime + me.ru_stime


def _write_checkpoints(root: Path) -> None:
    """The large test repos: random bytes stand for weights (a fetch never parses them)."""
    from volcache.testing.hub import write_random_repo

    write_random_repo(root / BIG_SINGLE, {"model.safetensors": 300_000_000}, seed=1)
    shards = {f"model-0000{i}-of-00004.safetensors": 75_000_000 for i in range(1, 5)}
    folder = write_random_repo(root / BIG_SHARDED, shards, seed=2)
    index = {"metadata": {"total_size": sum(shards.values())}, "weight_map": {f"w{i}": n for i, n in enumerate(shards)}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")


def _env(machine: Path, volume: Path, hub_url: str) -> dict[str, str]:
    (machine / "home").mkdir(parents=True, exist_ok=True)
    return child_env(
        HF_ENDPOINT=hub_url,
        HOME=str(machine / "home"),
        TMPDIR=str(machine),
        VOLCACHE_VOLUME=str(volume),
        VOLCACHE_EPHEMERAL=str(machine / "ephemeral"),
        VOLCACHE_STALE_CACHES="",
        VOLCACHE_FREE_MARGIN="0",
    )


def render(opts: Options, data: dict[str, Any]) -> Section:
    """The section again from its JSON (`python -m bench --render`), without measuring."""
    first = data.get("first_download")
    return _section(opts, {int(n): r for n, r in data["runs"].items()}, int(data["model_bytes"]), first)


def _section(
    opts: Options, rows: dict[int, list[dict[str, Any]]], model_bytes: int, first: dict[str, Any] | None = None
) -> Section:
    walls = {n: Summary.of(r["wall"] for r in runs) for n, runs in rows.items()}
    ratios = {n: max(r["hub_bytes"] for r in runs) / model_bytes for n, runs in rows.items()}
    lines = [
        "## Scale: N workers start together on an empty volume",
        "",
        f"`volcache fetch {MINILM}` ×N at once, one volume, Hub emulator capped at "
        f"{opts.hub_bandwidth / 1e6:.0f} MB/s per stream; model files {mb(model_bytes)}. {opts.repeats} rounds; "
        "Hub ÷ model is the worst round, wall time the median (min–max).",
        "",
        table(
            ["workers", "Hub bytes ÷ model bytes", "downloads of model.safetensors", "Hub requests", "wall time"],
            [
                [
                    n,
                    f"**{ratios[n]:.2f}×**",
                    f"{max(r['weight_downloads'] for r in runs):.2f}",
                    int(Summary.of(r["requests"] for r in runs).median),
                    walls[n].seconds(),
                ]
                for n, runs in rows.items()
            ],
        ),
        "",
    ]
    if rows:
        top = max(rows)
        met = "met" if ratios[top] <= 1.005 else "**missed**"
        lines += [f"- Target Hub bytes 1.00× for {top} workers: {ratios[top]:.2f}× ({met}).", ""]
    plots = []
    plot = bar_plot(
        opts.out / "scale.png",
        "N workers on an empty volume: wall time until all have the model",
        [f"{n} workers" for n in rows],
        {"wall time": [walls[n] for n in rows]},
    )
    if plot:
        plots.append(plot)
        lines += ["![scale](scale.png)", ""]
    if first is not None:
        lines += _first_download_lines(first)
    data = {"model_bytes": model_bytes, "runs": {str(n): r for n, r in rows.items()}, "hub_ratio": ratios}
    if first is not None:
        data["first_download"] = first
    return Section("scale", "\n".join(lines), data, plots)


def _first_download_lines(first: dict[str, Any]) -> list[str]:
    rows = []
    gains = {}
    for model, by in first["runs"].items():
        walls = {c: Summary.of(r["wall"] for r in runs) for c, runs in by.items() if runs}
        if HF_DOWNLOAD not in walls or VOLCACHE_MANY not in walls:
            continue
        gains[model] = walls[HF_DOWNLOAD].median / walls[VOLCACHE_MANY].median
        for contender, summary in walls.items():
            served = max(r["hub_bytes"] for r in by[contender])
            rate = served / summary.median / 1e6
            ratio = walls[HF_DOWNLOAD].median / summary.median
            cpu = [Summary.of(r.get(k, math.nan) for r in by[contender]).median for k in ("client_cpu", "emulator_cpu")]
            rows.append(
                [
                    f"`{model}`",
                    contender,
                    mb(served),
                    int(max(r["streams"] for r in by[contender])),
                    summary.seconds(),
                    f"{rate:.0f} MB/s",
                    f"{cpu[0]:.2f} / {cpu[1]:.2f}",
                    f"**{ratio:.2f}×**" if contender == VOLCACHE_MANY else f"{ratio:.2f}×",
                ]
            )
    n = len(next(iter(next(iter(first["runs"].values())).values()), []))
    lines = [
        "## First download: one worker on an empty volume",
        "",
        f"The Hub emulator caps each download stream at {first['stream_cap'] / 1e6:.0f} MB/s and all streams "
        f"together at {first['link'] / 1e6:.0f} MB/s (the link). Each contender starts from a fresh machine and "
        f"volume; {n} rounds, the order rotating; wall time is the median (min–max) from process start to exit. "
        "`hf download` is huggingface_hub's CLI (one stream per file, up to 8 files at once); `volcache fetch` "
        "is the worker's start-up download (the loader's files, verified, linked), on one stream per file "
        "(`VOLCACHE_DOWNLOAD_STREAMS=1`) and on its default 8 streams per large file. Speed-up is against "
        "`hf download`. CPU s: the contender's process and the emulator's (this process), medians.",
        "",
        table(
            [
                "repo",
                "contender",
                "Hub bytes",
                "most streams at once",
                "wall time",
                "MB/s",
                "CPU s: contender / emulator",
                "speed-up",
            ],
            rows,
        ),
        "",
    ]
    lines += [f"- `{m}`: volcache {g:.2f}× faster than `hf download`." for m, g in gains.items()]
    return [*lines, ""]
