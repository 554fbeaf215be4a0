"""Scale: N workers start together on an empty volume; what the Hub serves and how long it takes.

Each worker is a `volcache fetch` process (the store's start-up step, without loading the model)
with its own container disk; all share one volume folder and the offline Hub emulator, whose
download streams are capped (`Options.hub_bandwidth`). The store's lease lets one worker
download while the others wait and then reuse its copy, so the Hub serves the model once.
"""

from __future__ import annotations

import shutil
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
                    weights = hub.stats.per_file.get(f"{model}/model.safetensors", 0)
                    rows.setdefault(n, []).append(
                        {
                            "wall": wall,
                            "hub_bytes": hub.stats.bytes_served,
                            "requests": hub.stats.requests,
                            "weight_downloads": weights,
                            "model_bytes": model_bytes,
                        }
                    )
    return _section(opts, rows, model_bytes)


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
    return _section(opts, {int(n): r for n, r in data["runs"].items()}, int(data["model_bytes"]))


def _section(opts: Options, rows: dict[int, list[dict[str, Any]]], model_bytes: int) -> Section:
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
                    max(r["weight_downloads"] for r in runs),
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
    data = {"model_bytes": model_bytes, "runs": {str(n): r for n, r in rows.items()}, "hub_ratio": ratios}
    return Section("scale", "\n".join(lines), data, plots)
