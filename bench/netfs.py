"""Load throughput on a simulated network volume: each VOLCACHE_LOAD strategy ÷ the floor.

The volume is `bench._fuse`: a FUSE passthrough of a local folder that adds a round-trip latency
to every read request, a per-stream rate and an aggregate rate (see `NetworkVolume`). On it sits
a random-weight BERT of ~534 MB in the Hugging Face cache layout (blobs and snapshot links).
Each run is a fresh process (`bench._probe load`) that first loads a tiny model of the same
architecture (so library code is imported and warm: imports are the cold-start section's
business), then loads the big one through volcache's `load_model` with the page cache evicted,
runs one forward pass and touches every weight byte (as the copy to a GPU does).

The floor is the best parallel read of the same bytes through the same mount: 4, 8 or 16
threads reading 16 MiB chunks with `pread`, nothing else. The same strategies are measured on the
local disk under the mount (the reason `auto` keeps `mmap` there), and the worker itself runs on
the FUSE volume (process start → first result) with `auto` and with `mmap`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import _fuse
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

REPO = "bench/random-bert"
STRATEGIES = ("mmap", "read", "prefetch-wait", "auto")
LOCAL_STRATEGIES = ("mmap", "read", "prefetch")
WARM = ("mmap", "prefetch")  # on the local disk, also with every byte already in the page cache
SWEEP = (0.0005, 0.002, 0.004, 0.008)  # other request latencies, one round each: how the gap grows with latency
LABELS = {
    "mmap": "mmap (transformers' default)",
    "read": "read (`disable_mmap`, one read() per file)",
    "prefetch-wait": "prefetch, then build (waits for every byte first)",
    "prefetch": "prefetch (build overlaps the reads)",
    "auto": "**volcache `auto` → prefetch** (build overlaps the reads)",
}
FLOOR_THREADS = (4, 8, 16, 32)
MARKER = "bench: result "
TARGET_FLOOR, TARGET_MMAP = 1.2, 3.0


@dataclasses.dataclass(frozen=True)
class NetworkVolume:
    """How the simulated volume answers: documented in the results with every number."""

    latency: float = 0.001  # seconds added to every read request (a storage round trip)
    stream_bandwidth: float = 300e6  # bytes/s of one request (RunPod volumes: ~200–400 MB/s per stream)
    bandwidth: float = 400e6  # bytes/s of all requests together
    max_read: int = 128 * 1024  # the largest read request (libfuse 2 and the kernel's default)

    def describe(self) -> str:
        return (
            f"FUSE passthrough (`bench/_fuse.py`): +{self.latency * 1e3:.1f} ms per read request, "
            f"{self.stream_bandwidth / 1e6:.0f} MB/s per request stream, {self.bandwidth / 1e6:.0f} MB/s in all, "
            f"requests of at most {self.max_read // 1024} KiB, kernel readahead 128 KiB, page cache kept across opens"
        )


@contextlib.contextmanager
def mounted(source: Path, mountpoint: Path, volume: NetworkVolume, work: Path) -> Iterator[Path]:
    """Mount `source` at `mountpoint` through the throttling FUSE daemon; yields its stats file."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    ready, stats = work / "fuse.ready", work / "fuse.stats"
    ready.unlink(missing_ok=True)  # left by an earlier mount: wait for this one's
    log = open(work / "fuse.log", "wb")  # noqa: SIM115 - closed below, after the daemon exits
    command = [python(), "-m", "bench._fuse", str(source), str(mountpoint), "--latency", str(volume.latency)]
    command += ["--stream-bandwidth", str(volume.stream_bandwidth), "--bandwidth", str(volume.bandwidth)]
    command += ["--max-read", str(volume.max_read), "--ready", str(ready), "--stats", str(stats)]
    daemon = subprocess.Popen(command, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the FUSE daemon did not start: {(work / 'fuse.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield stats
    finally:
        _fuse.unmount(mountpoint)
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()


def _fuse_counts(stats: Path) -> dict[str, int]:
    time.sleep(0.25)  # the daemon rewrites the file every 0.1 s
    data: dict[str, int] = json.loads(stats.read_text())
    return data


def _weights(snapshot: Path) -> list[Path]:
    from volcache.store.loading import weight_files

    return weight_files(snapshot)


def run(
    opts: Options,
    *,
    hidden: int | None = None,
    layers: int | None = None,
    strategies: tuple[str, ...] = STRATEGIES,
    worker: bool = True,
    local: bool = True,
    sweep: tuple[float, ...] | None = None,
    volume: NetworkVolume | None = None,
) -> Section:
    reason = _fuse.available()
    if reason is not None:
        text = f"## Simulated network volume\n\nSkipped: FUSE cannot be mounted here ({reason}).\n"
        return Section("netfs", text, {"skipped": reason})
    volume = volume or NetworkVolume()
    hidden = hidden or (256 if opts.quick else 1024)
    layers = layers or (2 if opts.quick else 8)
    repeats = opts.repeats
    sweep = sweep if sweep is not None else (() if opts.quick else SWEEP)
    with opts.workdir("netfs") as tmp:
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
        model_bytes = (model_dir / "model.safetensors").stat().st_size
        backing = work / "backing"
        files = {p.name: p for p in model_dir.iterdir() if p.is_file()}
        local_snapshot = write_hub_snapshot(backing / "hub", REPO, files)
        tiny = write_hub_snapshot(work / "tiny-hub", "bench/tiny-bert", {p.name: p for p in tiny_dir.iterdir()})
        results: dict[str, Any] = {"model_bytes": model_bytes, "volume": dataclasses.asdict(volume)}
        with mounted(backing, work / "mnt", volume, work) as stats:
            snapshot = work / "mnt" / local_snapshot.relative_to(backing)
            from volcache.store.loading import choose_strategy

            results["auto_on_fuse"] = choose_strategy("auto", snapshot)
            backing_files = _weights(local_snapshot)

            def cold() -> None:
                evict(_weights(snapshot))
                evict(backing_files)

            net = _measure(snapshot, tiny, strategies, repeats, cold, stats)
            results["network"] = net
            if worker:
                results["worker"] = _worker_runs(snapshot, work, repeats, cold, stats)
        if local:
            results["local"] = _measure(
                local_snapshot, tiny, LOCAL_STRATEGIES, repeats, lambda: evict(backing_files), None, warm=WARM
            )
        results["sweep"] = {}
        for latency in sweep:
            other = dataclasses.replace(volume, latency=latency)
            with mounted(backing, work / "mnt", other, work) as stats:
                results["sweep"][str(latency)] = _measure(
                    snapshot, tiny, ("mmap", "auto"), 1, cold, stats, floor_threads=(16, 32)
                )
        return _section(opts, results, volume, strategies)


def _measure(
    snapshot: Path,
    tiny: Path,
    strategies: tuple[str, ...],
    repeats: int,
    cold: Any,
    stats: Path | None,
    floor_threads: tuple[int, ...] = FLOOR_THREADS,
    warm: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Interleaved runs: every floor configuration and strategy once per round, `repeats` rounds.

    Strategies in `warm` run once more right after their cold run, with the page cache as it
    left it (every weight byte cached), under the name `<strategy> warm`.
    """
    runs: dict[str, list[dict[str, Any]]] = {}
    env = child_env(HF_HUB_OFFLINE="1")
    files = [str(p) for p in _weights(snapshot)]
    for _ in range(repeats):
        jobs: list[tuple[str, list[str]]] = [
            (f"floor-{n}", [python(), "-m", "bench._probe", "read", *files, "--threads", str(n)]) for n in floor_threads
        ]
        jobs += [
            (s, [python(), "-m", "bench._probe", "load", str(snapshot), "--strategy", s, "--warm", str(tiny)])
            for s in strategies
        ]
        for name, command in jobs:
            for label in (name, f"{name} warm") if name in warm else (name,):
                if label == name:
                    cold()
                before = _fuse_counts(stats) if stats else None
                result = run_timed(command, env, MARKER, timeout=600).check()
                data = result.json_after(MARKER)
                if stats and before:
                    after = _fuse_counts(stats)
                    data["requests"] = after["reads"] - before["reads"]
                    data["bytes_read"] = after["read_bytes"] - before["read_bytes"]
                runs.setdefault(label, []).append(data)
    return runs


def _worker_runs(snapshot: Path, work: Path, repeats: int, cold: Any, stats: Path) -> dict[str, list[dict[str, Any]]]:
    """`python -m volcache.worker --test_input` on the FUSE volume: process start → first result."""
    from volcache.worker import RESULT_PREFIX, STARTED_PREFIX

    runs: dict[str, list[dict[str, Any]]] = {}
    job = json.dumps({"input": {"inputs": "the quick brown fox jumps over the lazy dog"}})
    for i in range(repeats):
        for load in ("mmap", "auto") if i % 2 == 0 else ("auto", "mmap"):  # alternate who goes first
            cold()
            env = child_env(
                MODEL_NAME=str(snapshot),
                MODEL_TASK="feature-extraction",
                VOLCACHE_LOAD=load,
                VOLCACHE_VOLUME=str(work / "worker-volume"),
                VOLCACHE_EPHEMERAL=str(work / "worker-ephemeral"),
                VOLCACHE_STALE_CACHES="",
                VOLCACHE_FREE_MARGIN="0",
                VOLCACHE_DEVICE="cpu",
                HOME=str(work / "worker-home"),
                RUNPOD_DEBUG_LEVEL="WARN",
            )
            before = _fuse_counts(stats)
            result = run_timed([python(), "-m", "volcache.worker", "--test_input", job], env, RESULT_PREFIX).check()
            after = _fuse_counts(stats)
            started = result.json_after(STARTED_PREFIX)
            runs.setdefault(load, []).append(
                {
                    "seconds": result.seconds_to_result,
                    "load": started["load"],
                    "timings_s": started["timings_s"],
                    "load_s": started.get("load_s", {}),
                    "prefetch": started.get("prefetch"),
                    "requests": after["reads"] - before["reads"],
                    "round": i,
                }
            )
    return runs


def _round_lines(w: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Round by round, `auto` ÷ `mmap` to the first result: the target is ≤ 1.00 in every round."""
    pairs = list(zip(w["auto"], w["mmap"], strict=False))
    ratios = [float(a["seconds"]) / float(m["seconds"]) for a, m in pairs]
    cells = ", ".join(
        f"round {k + 1}: {float(a['seconds']):.2f} s vs {float(m['seconds']):.2f} s ({ratios[k]:.2f}×)"
        for k, (a, m) in enumerate(pairs)
    )
    late = sum(r > 1.0 for r in ratios)
    met = "met" if late == 0 else f"**missed** in {late} of {len(ratios)}"
    return [
        f"`auto` ÷ `mmap`, process start → first result, each round side by side (who goes first alternates): {cells}.",
        f"- Target `auto` no later than `mmap` in every round: {met}.",
    ]


def _summary(runs: list[dict[str, Any]], key: str) -> Summary:
    return Summary.of(float(r[key]) for r in runs)


def _floor(runs: dict[str, list[dict[str, Any]]]) -> tuple[str, Summary]:
    floors = {name: _summary(r, "seconds") for name, r in runs.items() if name.startswith("floor-")}
    best = min(floors, key=lambda name: floors[name].median)
    return best, floors[best]


def _strategy_table(runs: dict[str, list[dict[str, Any]]], strategies: tuple[str, ...], network: bool) -> list[Any]:
    best, floor = _floor(runs)
    rows = [
        [
            f"floor: parallel read, {name.split('-')[1]} threads" + (" (best)" if name == best else ""),
            _summary(r, "seconds").seconds(),
            ratio(_summary(r, "seconds").median, floor.median),
            "–",
            *((str(r[0].get("requests", "–")), mb(r[0].get("bytes_read", 0))) if network else ()),
        ]
        for name, r in runs.items()
        if name.startswith("floor-")
    ]
    for s in [*strategies, *(f"{w} warm" for w in WARM if f"{w} warm" in runs)]:
        r = runs[s]
        every = _summary(r, "all_bytes")
        rows.append(
            [
                LABELS[s] if s in LABELS else f"{LABELS[s.removesuffix(' warm')]}, page cache warm",
                every.seconds(),
                ratio(every.median, floor.median),
                _summary(r, "forward").seconds(),
                *((str(r[0].get("requests", "–")), mb(r[0].get("bytes_read", 0))) if network else ()),
            ]
        )
    return rows


def render(opts: Options, data: dict[str, Any]) -> Section:
    """The section again from its JSON (`python -m bench --render`), without measuring."""
    if "skipped" in data:
        return Section("netfs", f"## Simulated network volume\n\nSkipped: {data['skipped']}.\n", data)
    strategies = tuple(s for s in STRATEGIES if s in data["network"])
    return _section(opts, data, NetworkVolume(**data["volume"]), strategies)


def _section(opts: Options, results: dict[str, Any], volume: NetworkVolume, strategies: tuple[str, ...]) -> Section:
    net = results["network"]
    headers = ["strategy", "load + every byte in memory", "÷ floor", "load + first forward pass"]
    lines = [
        "## Load throughput on a simulated network volume",
        "",
        f"Model: random-weight BERT, {mb(results['model_bytes'])} of float32 safetensors, in the Hugging Face "
        f"cache layout. Volume: {volume.describe()}. `auto` chose `{results['auto_on_fuse']}` on the mount. "
        "Page cache evicted before each run; library code imported and warm (a tiny model of the same "
        f"architecture loaded first). {opts.repeats} rounds, "
        "interleaved; median (min–max).",
        "",
        table([*headers, "read requests", "bytes read"], _strategy_table(net, strategies, True)),
        "",
    ]
    _, floor = _floor(net)
    verdicts: dict[str, Any] = {}
    if "auto" in net:
        auto = _summary(net["auto"], "all_bytes").median
        verdicts["auto_over_floor"] = auto / floor.median
        met = "met" if auto / floor.median <= TARGET_FLOOR else "**missed**"
        lines.append(f"- Target `auto` ≤ {TARGET_FLOOR}× the floor: {auto / floor.median:.2f}× ({met}).")
        if "mmap" in net:
            mmap = _summary(net["mmap"], "all_bytes").median
            verdicts["mmap_over_auto"] = mmap / auto
            met = "met" if mmap / auto >= TARGET_MMAP else "**missed**"
            if mmap / floor.median < TARGET_MMAP:  # then no reader of these bytes could meet it
                met += f"; out of any reader's reach here: `mmap` is {mmap / floor.median:.2f}× the floor itself"
            lines.append(f"- Target `auto` ≥ {TARGET_MMAP}× faster than `mmap`: {mmap / auto:.2f}× ({met}).")
        lines.append("")
    results["verdicts"] = verdicts
    if "worker" in results:
        w = results["worker"]
        rows = []
        for load, runs in w.items():
            split = {k: Summary.of(float(r["load_s"].get(k, 0.0)) for r in runs) for k in ("import", "construct")}
            wait = Summary.of(float(r["load_s"].get("prefetch_wait", 0.0)) for r in runs)
            rows.append(
                [
                    f"`VOLCACHE_LOAD={load}` → {runs[0]['load']}",
                    _summary(runs, "seconds").seconds(),
                    split["import"].seconds(),
                    split["construct"].seconds(),
                    wait.seconds(),
                    Summary.of(float(r["timings_s"]["warmup"]) for r in runs).seconds(),
                ]
            )
        lines += [
            "The worker on the same volume (`python -m volcache.worker --test_input`, `feature-extraction`), "
            "process start → first result, page cache evicted; the load split is the worker's own `load_s`:",
            "",
            table(["worker", "start → first result", "import", "construct", "prefetch wait", "warm-up"], rows),
            "",
        ]
        if "mmap" in w and "auto" in w:
            a, m = _summary(w["auto"], "seconds").median, _summary(w["mmap"], "seconds").median
            lines += [f"`auto` saves {m - a:.2f} s of {m:.2f} s ({m / a:.2f}×) at start-up (medians).", ""]
            lines += [*_round_lines(w), ""]
    if "local" in results:
        loc = results["local"]
        lines += [
            "The strategies on the local disk under the mount (ext4 on a virtual disk), page cache evicted (and, "
            "last rows, warm: the run again at once). `auto` on a local disk picks `prefetch` when sampled pages "
            "of the weights are not in the page cache (`preadv2` with `RWF_NOWAIT`) and `mmap` when they are:",
            "",
            table(headers, _strategy_table(loc, LOCAL_STRATEGIES, False)),
            "",
        ]
    plots = []
    groups = ["floor", *strategies]
    series = {"network volume": [_floor(net)[1], *(_summary(net[s], "all_bytes") for s in strategies)]}
    if "local" in results:
        loc = results["local"]
        local_of = {"auto": "prefetch"}  # what `auto` picks on a local disk with a cold page cache
        series["local disk"] = [_floor(loc)[1]] + [
            _summary(loc[local_of.get(s, s)], "all_bytes") if local_of.get(s, s) in loc else None for s in strategies
        ]
    if results.get("sweep"):
        sweep = {str(volume.latency): net, **results["sweep"]}
        lines += [*_sweep_lines(dict(sorted(sweep.items(), key=lambda kv: float(kv[0]))), volume.latency), ""]
    plot = bar_plot(
        opts.out / "netfs.png",
        f"Load of {mb(results['model_bytes'])} until every byte is in memory (cold page cache)",
        groups,
        series,
    )
    if plot:
        plots.append(plot)
        lines += ["![load strategies](netfs.png)", ""]
    return Section("netfs", "\n".join(lines), results, plots)


def _sweep_lines(sweep: dict[str, dict[str, list[dict[str, Any]]]], main: float) -> list[str]:
    rows, both, beyond = [], [], []
    for latency, runs in sweep.items():
        _, floor = _floor(runs)
        mmap, auto = _summary(runs["mmap"], "all_bytes"), _summary(runs["auto"], "all_bytes")
        ms = f"{float(latency) * 1e3:.1f} ms"
        met = auto.median / floor.median <= TARGET_FLOOR and mmap.median / auto.median >= TARGET_MMAP
        (both if met else []).append(ms)
        if mmap.median / floor.median < TARGET_MMAP:
            beyond.append(ms)
        rows.append(
            [
                ms + (" (the table above)" if float(latency) == main else ""),
                floor.seconds(),
                f"{mmap.seconds()} ({ratio(mmap.median, floor.median)})",
                f"{auto.seconds()} ({ratio(auto.median, floor.median)})",
                ratio(mmap.median, auto.median),
                "met" if met else "missed",
            ]
        )
    heads = ["latency per request", "floor", "mmap", "volcache `auto`", "mmap ÷ auto", "both targets"]
    lines = [
        "Other request latencies (one round each, same volume otherwise): load + every byte, ÷ floor in brackets.",
        "",
        table(heads, rows),
        "",
        f"- Both targets (`auto` ≤ {TARGET_FLOOR}× the floor and ≥ {TARGET_MMAP}× faster than `mmap`) hold at: "
        + (", ".join(both) if both else "none of these latencies")
        + ".",
    ]
    if beyond:
        lines.append(
            f"- Out of any reader's reach at {', '.join(beyond)}: there `mmap` is less than {TARGET_MMAP}× the floor "
            "itself (the best parallel read), so nothing that reads the same bytes from this volume can be "
            f"{TARGET_MMAP}× faster than it."
        )
    return lines
