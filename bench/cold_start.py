"""Cold start, process start → first result, for all-MiniLM-L6-v2: volcache, the seed, plain transformers.

Three situations a RunPod worker meets, measured side by side in each round:

- **cold volume**: an empty volume; the model comes from the offline Hub emulator, whose every
  download stream is capped (`Options.hub_bandwidth`);
- **warm volume, cold page cache**: the model is on the volume from the previous run, and every
  file on it was evicted from the page cache (`posix_fadvise(DONTNEED)`) after that process exited,
  as on a fresh machine that mounts the same volume;
- **warm page cache**: the same run again at once, as on a restart on the same machine.

The contenders: volcache's worker (`python -m volcache.worker --test_input`), the hand-written
worker (`bench.baselines.hand_written`: `SentenceTransformer(snapshot)` + `runpod.serverless.start`
on the snapshot volcache left on its volume, so warm scenarios only), the seed's "after" handler
(`bench.baselines.seed_after`, the same RunPod `--test_input` mode), and a plain
`transformers.pipeline` (`bench.baselines.plain_pipeline`), each on its own volume folder. The
floor is one process that does the least an embeddings result needs, one step after the
other: import torch and sentence-transformers, read the weight bytes in parallel, build the
model from the page cache, one forward pass (`bench._probe floor`). On a cold volume the floor
adds the transfer time of the weights at the emulator's cap.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from volcache.worker import RESULT_PREFIX, STARTED_PREFIX

from ._common import (
    MINILM,
    SENTENCES,
    Options,
    Run,
    Section,
    Summary,
    bar_plot,
    child_env,
    evict,
    python,
    ratio,
    regular_files,
    run_timed,
    table,
)

MARKER = "bench: result "
CONTENDERS = ("volcache", "hand-written", "seed after", "plain pipeline")
SCENARIOS = ("cold volume", "warm volume, cold page cache", "warm page cache")
TARGET_WARM = 1.10
TARGET_HAND_WRITTEN = 0.65  # issue 16: volcache's warm start ÷ the hand-written sentence-transformers worker
HAND_WRITTEN = "hand-written"  # loads the snapshot on volcache's volume: runs after volcache, warm scenarios only


def run(
    opts: Options,
    *,
    contenders: tuple[str, ...] = CONTENDERS,
    scenarios: tuple[str, ...] = SCENARIOS,
    floor: bool = True,
) -> Section:
    from volcache.testing.hub import Faults, HubEmulator, minilm_folder, mirror_root_with

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in scenarios}
    with opts.workdir("cold-start") as tmp:
        work = Path(tmp)
        root = mirror_root_with(work, {MINILM: minilm_folder()})
        weights = (minilm_folder() / "model.safetensors").stat().st_size
        with HubEmulator(root, faults=Faults(bandwidth=int(opts.hub_bandwidth))) as hub:
            commands = _commands(work, hub.url)
            for _ in range(opts.repeats):
                for name in contenders:
                    command, env, marker, volume = commands[name]

                    def once(
                        scenario: str,
                        name: str = name,
                        command: list[str] = command,
                        env: dict[str, str] = env,
                        marker: str = marker,
                    ) -> Run:
                        hub.reset_stats()
                        result = run_timed(command, env, marker).check()
                        entry: dict[str, Any] = {
                            "seconds": result.seconds_to_result,
                            "hub_requests": hub.stats.requests,
                            "hub_bytes": hub.stats.bytes_served,
                        }
                        if name == "volcache":
                            entry["started"] = result.json_after(STARTED_PREFIX)
                        runs.setdefault(scenario, {}).setdefault(name, []).append(entry)
                        return result

                    if name == HAND_WRITTEN:
                        env["BENCH_SNAPSHOT"] = str(_volcache_snapshot(volume))
                    else:
                        shutil.rmtree(volume, ignore_errors=True)
                        volume.mkdir(parents=True)
                    (work / "home").mkdir(exist_ok=True)
                    _scenarios(
                        scenarios,
                        once,
                        lambda volume=volume: evict(regular_files(volume)),
                        warm_only=name == HAND_WRITTEN,
                    )
                if floor and "volcache" in contenders:
                    snapshot = _volcache_snapshot(work / "volcache-volume")
                    command = [python(), "-m", "bench._probe", "floor", str(snapshot)]
                    env = child_env(HF_HUB_OFFLINE="1", HOME=str(work / "home"))
                    for scenario in scenarios:
                        if scenario == "cold volume":
                            continue
                        if scenario.endswith("cold page cache"):
                            evict(regular_files(work / "volcache-volume"))
                        result = run_timed(command, env, MARKER).check()
                        data = result.json_after(MARKER) | result.json_after("bench: runpod ")
                        runs[scenario].setdefault("floor", []).append({**data, "seconds": result.seconds_to_result})
    return _section(opts, runs, contenders, scenarios, weights)


def _scenarios(
    scenarios: tuple[str, ...], once: Callable[[str], Run], evict_volume: Callable[[], int], *, warm_only: bool = False
) -> None:
    """Run the scenarios in order on one volume: cold volume, then cold page cache, then warm.

    `warm_only`: a contender on a volume another one filled (the hand-written worker) skips the first.
    """
    if warm_only:
        pass
    elif "cold volume" in scenarios:
        once("cold volume")
    else:
        once("setup")  # fills the volume; not reported
    if "warm volume, cold page cache" in scenarios:
        evict_volume()
        once("warm volume, cold page cache")
    if "warm page cache" in scenarios:
        once("warm page cache")


def _commands(work: Path, hub_url: str) -> dict[str, tuple[list[str], dict[str, str], str, Path]]:
    job = json.dumps({"input": {"input": SENTENCES}})
    home = str(work / "home")
    vol = work / "volcache-volume"
    volcache_env = child_env(
        HF_ENDPOINT=hub_url,
        MODEL_NAME=MINILM,
        VOLCACHE_VOLUME=str(vol),
        VOLCACHE_EPHEMERAL=str(work / "ephemeral"),
        VOLCACHE_STALE_CACHES="",
        VOLCACHE_FREE_MARGIN="0",
        HOME=home,
        RUNPOD_DEBUG_LEVEL="WARN",
    )
    seed_vol = work / "seed-volume"
    cache = str(seed_vol / "models")
    seed_env = child_env(
        HF_ENDPOINT=hub_url,
        MODEL_NAME=MINILM,
        HF_HOME=cache,
        TRANSFORMERS_CACHE=cache,
        HF_HUB_CACHE=f"{cache}/hub",
        TORCH_HOME=f"{cache}/torch",
        BENCH_VOLUME_CACHE=cache,
        BENCH_BUILD_CACHE=str(work / "tmp-models"),
        HOME=home,
        RUNPOD_DEBUG_LEVEL="WARN",
    )
    plain_vol = work / "plain-volume"
    plain_env = child_env(HF_ENDPOINT=hub_url, HF_HOME=str(plain_vol / "models"), HOME=home)
    hand_env = child_env(HF_HUB_OFFLINE="1", HOME=home, RUNPOD_DEBUG_LEVEL="WARN")
    hand = [python(), "-m", "bench.baselines.hand_written", "--test_input", job]
    return {
        "volcache": ([python(), "-m", "volcache.worker", "--test_input", job], volcache_env, RESULT_PREFIX, vol),
        HAND_WRITTEN: (hand, hand_env, MARKER, vol),
        "seed after": ([python(), "-m", "bench.baselines.seed_after", "--test_input", job], seed_env, MARKER, seed_vol),
        "plain pipeline": ([python(), "-m", "bench.baselines.plain_pipeline", MINILM], plain_env, MARKER, plain_vol),
    }


def _volcache_snapshot(volume: Path) -> Path:
    snapshots = sorted((volume / "models" / "hub").glob("models--*/snapshots/*"))
    if not snapshots:
        raise RuntimeError(f"no snapshot under {volume}: the volcache runs did not download the model")
    return snapshots[0]


def render(opts: Options, data: dict[str, Any]) -> Section:
    """The section again from its JSON (`python -m bench --render`), without measuring."""
    runs = data["runs"]
    scenarios = tuple(s for s in SCENARIOS if s in runs)
    contenders = tuple(c for c in CONTENDERS if any(c in runs[s] for s in scenarios))
    from volcache.testing.hub import minilm_folder

    weights = data.get("weights") or (minilm_folder() / "model.safetensors").stat().st_size
    return _section(opts, runs, contenders, scenarios, int(weights))


def _s(runs: list[dict[str, Any]] | None, key: str = "seconds") -> Summary | None:
    return Summary.of(float(r[key]) for r in runs) if runs else None


def _section(
    opts: Options,
    runs: dict[str, dict[str, list[dict[str, Any]]]],
    contenders: tuple[str, ...],
    scenarios: tuple[str, ...],
    weights: int,
) -> Section:
    runs.pop("setup", None)
    floors: dict[str, Summary | None] = {s: _s(runs[s].get("floor")) for s in scenarios}
    runpod_floors: dict[str, Summary | None] = {
        s: Summary.of(float(r["seconds"]) + float(r["runpod_import"]) for r in runs[s]["floor"])
        if runs[s].get("floor")
        else None
        for s in scenarios
    }
    if "cold volume" in scenarios:
        transfer = weights / opts.hub_bandwidth
        for table_ in (floors, runpod_floors):
            cold_cache = table_.get("warm volume, cold page cache")
            table_["cold volume"] = Summary.of(v + transfer for v in cold_cache.values) if cold_cache else None
    headers = [
        "scenario",
        *contenders,
        "floor",
        "floor + `import runpod`",
        *(f"{c} ÷ floor" for c in contenders),
        "volcache ÷ (floor + runpod)" if "volcache" in contenders else "",
        "volcache ÷ hand-written" if {"volcache", HAND_WRITTEN} <= set(contenders) else "",
        "Hub requests",
    ]
    rows = []
    for s in scenarios:
        f, rf = floors.get(s), runpod_floors.get(s)
        cells = [_s(runs[s].get(c)) for c in contenders]
        ours, hand = _s(runs[s].get("volcache")), _s(runs[s].get(HAND_WRITTEN))
        requests = " / ".join(str(runs[s][c][0]["hub_requests"]) if runs[s].get(c) else "–" for c in contenders)
        rows.append(
            [
                s,
                *(c.seconds() if c else "–" for c in cells),
                f.seconds() if f else "–",
                rf.seconds() if rf else "–",
                *(ratio(c.median, f.median) if c and f else "–" for c in cells),
                ratio(ours.median, rf.median) if ours and rf else "",
                ratio(ours.median, hand.median) if ours and hand else "–",
                requests,
            ]
        )
    lines = [
        "## Cold start: process start → first result (all-MiniLM-L6-v2, 90.9 MB of weights)",
        "",
        f"Hub emulator capped at {opts.hub_bandwidth / 1e6:.0f} MB/s per download stream. {opts.repeats} rounds, "
        "contenders interleaved in each round; median (min–max). The floor on a cold volume is the cold-page-cache "
        f"floor plus the weights' transfer time at the cap ({weights / opts.hub_bandwidth:.2f} s). Hub requests: "
        + " / ".join(contenders)
        + ", first round.",
        "",
        table(headers, rows),
        "",
    ]
    verdicts: dict[str, Any] = {}
    if "volcache" in contenders:
        for s in scenarios:
            v, f = _s(runs[s].get("volcache")), floors.get(s)
            if s != "cold volume" and v and f:
                verdicts[s] = v.median / f.median
        warm = [s for s in ("warm volume, cold page cache", "warm page cache") if s in verdicts]
        for s in ("warm volume, cold page cache", "warm page cache"):
            v, h = _s(runs.get(s, {}).get("volcache")), _s(runs.get(s, {}).get(HAND_WRITTEN))
            if v and h:
                per_round = [
                    float(a["seconds"]) / float(b["seconds"])
                    for a, b in zip(runs[s]["volcache"], runs[s][HAND_WRITTEN], strict=False)
                ]
                verdicts[f"{s} ÷ hand-written"] = v.median / h.median
                met = "met" if v.median / h.median <= TARGET_HAND_WRITTEN else "**missed**"
                rounds = ", ".join(f"{r:.2f}×" for r in per_round)
                lines.append(
                    f"- Target volcache warm start ≤ {TARGET_HAND_WRITTEN}× the hand-written sentence-transformers "
                    f"worker ({s}): {v.median / h.median:.2f}× ({met}; rounds {rounds})."
                )
        for s in warm:
            met = "met" if verdicts[s] <= TARGET_WARM else "**missed**"
            v, rf = _s(runs[s].get("volcache")), runpod_floors.get(s)
            with_runpod = f"; {v.median / rf.median:.2f}× the floor + `import runpod`" if v and rf else ""
            target = f"- Target volcache warm start ≤ {TARGET_WARM}× the floor ({s})"
            lines.append(f"{target}: {verdicts[s]:.2f}× ({met}){with_runpod}.")
        for s in ("warm volume, cold page cache", "warm page cache"):
            if runs.get(s, {}).get("volcache"):
                n = max(r["hub_requests"] for r in runs[s]["volcache"])
                met = "met" if n == 0 else "**missed**"
                lines.append(f"- Target 0 Hub requests on a warm start ({s}): {n} ({met}).")
        lines += ["", *_breakdown(runs, scenarios), "", *_imports(runs, scenarios)]
    if any(runs[s].get("floor") for s in scenarios):
        lines += ["", *_floor_parts(runs, scenarios)]
    plots = []
    plot = bar_plot(
        opts.out / "cold_start.png",
        "Cold start of all-MiniLM-L6-v2: process start → first result",
        list(scenarios),
        {c: [_s(runs[s].get(c)) for s in scenarios] for c in contenders}
        | {
            "floor": [floors.get(s) for s in scenarios],
            "floor + import runpod": [runpod_floors.get(s) for s in scenarios],
        },
    )
    if plot:
        plots.append(plot)
        lines += ["", "![cold start](cold_start.png)"]
    data = {
        "runs": runs,
        "floors": {s: f.as_dict() if f else None for s, f in floors.items()},
        "runpod_floors": {s: f.as_dict() if f else None for s, f in runpod_floors.items()},
        "verdicts": verdicts,
        "weights": weights,
    }
    return Section("cold_start", "\n".join(lines), data, plots)


def _breakdown(runs: dict[str, dict[str, list[dict[str, Any]]]], scenarios: tuple[str, ...]) -> list[str]:
    """Where volcache's time goes, from its own `volcache: started` line (medians)."""
    keys = ["pin", "cleanup", "ensure", "import", "construct", "prefetch_wait", "warmup", "runpod_import"]
    rows = []
    for s in scenarios:
        vc = runs[s].get("volcache")
        if not vc:
            continue
        parts = []
        for k in keys:
            where = "load_s" if k in ("import", "construct", "prefetch_wait") else "timings_s"
            parts.append(Summary.of(float(r["started"].get(where, {}).get(k, 0.0)) for r in vc).median)
        since = Summary.of(float(r["started"].get("since_process_start_s") or 0.0) for r in vc).median
        total = Summary.of(float(r["started"]["timings_s"]["total"]) for r in vc).median
        result = Summary.of(float(r["seconds"]) for r in vc).median
        rows.append([s, *(f"{p:.2f}" for p in parts), f"{since - total:.2f}", f"{since:.2f}", f"{result - since:.2f}"])
    head = [
        "volcache (s)",
        "pin",
        "cleanup",
        "ensure",
        "load: import",
        "load: construct",
        "load: prefetch wait",
        "warm-up",
        "`import runpod`",
        "before prepare()",
        "ready",
        "ready → result",
    ]
    return [
        "Where volcache's time goes (medians, from the worker's `volcache: started` line; *before prepare()* is "
        "the interpreter and volcache's own imports, `import runpod` runs with py-cpuinfo's probe started early "
        "(`volcache.worker._sdk`), *ready → result* is RunPod's SDK starting and running the job):",
        "",
        table(head, rows),
    ]


def _imports(runs: dict[str, dict[str, list[dict[str, Any]]]], scenarios: tuple[str, ...]) -> list[str]:
    """volcache's heavy imports by library, from the start-up line's `imports_s` (medians)."""
    libraries: list[str] = []
    for s in scenarios:
        for r in runs[s].get("volcache", []):
            libraries += [k for k in r["started"].get("imports_s", {}) if k not in libraries]
    rows = []
    for s in scenarios:
        vc = runs[s].get("volcache")
        if vc:
            cells = [
                Summary.of(float(r["started"].get("imports_s", {}).get(k, 0.0)) for r in vc).median for k in libraries
            ]
            rows.append([s, *(f"{c:.2f}" for c in cells), f"{sum(cells):.2f}"])
    if not libraries:
        return []
    return [
        "volcache's heavy imports by library (medians of `imports_s`, seconds; each without what an earlier one "
        "imported):",
        "",
        table(["imports (s)", *(f"`{k}`" for k in libraries), "sum"], rows),
    ]


def _floor_parts(runs: dict[str, dict[str, list[dict[str, Any]]]], scenarios: tuple[str, ...]) -> list[str]:
    rows = []
    for s in scenarios:
        fl = runs[s].get("floor")
        if not fl:
            continue
        start = Summary.of(float(r["seconds"]) - float(r["in_process"]) + float(r["before_import"]) for r in fl)
        keys = ("import", "read", "construct", "forward", "runpod_import")
        parts = [Summary.of(float(r[k]) for r in fl).median for k in keys]
        rows.append([s, f"{start.median:.2f}", *(f"{p:.2f}" for p in parts)])
    head = [
        "floor (s)",
        "interpreter start",
        "import torch, sentence-transformers",
        "parallel read",
        "build",
        "forward",
        "then `import runpod`",
    ]
    return ["The floor's parts (medians):", "", table(head, rows)]
