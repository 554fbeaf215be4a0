"""Disk: bytes of weights on all disks ÷ the model's weight bytes, for the seed's two workers and volcache.

Each worker has its own container disk (a temporary folder holding its HOME, TMPDIR, /tmp/models
and volcache's ephemeral folder); the workers of one scenario share one volume folder. Weight
bytes are found by content: every regular file (symlinks never followed, each inode once) whose
sha256 is the model's weight file counts, whatever its name or folder, so a Hugging Face cache
blob, a snapshot file that `copytree` turned into a copy, and a copy anywhere else all count.

Per layout (`layouts`): tiny repos in the layouts real ones ship (sharded + consolidated, `original/`,
sentence-transformers exports, a diffusers pipeline with fp16 variants and a root checkpoint, GGUF
quantizations), weight bytes on the volume ÷ weight bytes the loader opened, for volcache,
`snapshot_download` with no patterns, and the whole repo (what RunPod's cached models store). The
loader's opens are recorded with strace on volcache's snapshot (`volcache.testing.loaders`).
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ._common import (
    MINILM,
    REPO_ROOT,
    SENTENCES,
    Options,
    Section,
    Summary,
    bar_plot,
    check_all,
    child_env,
    count_weights,
    mb,
    model_weights,
    python,
    start_all,
    table,
)

SEED_BEFORE, SEED_AFTER, VOLCACHE, LAYOUTS = "seed before", "seed after", "volcache", "layouts"
# (label, repo, loader, request environment)
LAYOUT_CASES = [
    ("sharded + index + consolidated", "org/sharded", "transformers", {}),
    ("single file + original/", "org/original", "transformers", {}),
    ("sentence-transformers + onnx/openvino", "org/st-exports", "sentence-transformers", {}),
    ("diffusers, no variant", "org/tiny-sd", "diffusers", {}),
    ("diffusers, MODEL_VARIANT=fp16", "org/tiny-sd", "diffusers", {"MODEL_VARIANT": "fp16"}),
    ("GGUF, MODEL_FILE=*Q8_0.gguf", "org/tiny-gguf", "gguf", {"MODEL_FILE": "*Q8_0.gguf"}),
    ("GGUF split, MODEL_FILE=*F16*", "org/tiny-gguf", "gguf", {"MODEL_FILE": "*F16*"}),
]


class Machine:
    """One worker's container disk, under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home, self.tmp, self.build_cache = root / "home", root / "tmp", root / "tmp" / "models"
        for folder in (self.home, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        return child_env(HOME=str(self.home), TMPDIR=str(self.tmp), RUNPOD_DEBUG_LEVEL="WARN", **extra)


def run(
    opts: Options, *, scenarios: tuple[str, ...] = (SEED_BEFORE, SEED_AFTER, VOLCACHE, LAYOUTS), workers: int = 8
) -> Section:
    from volcache.testing.hub import HubEmulator, minilm_folder, mirror_root_with

    workers = workers or (2 if opts.quick else 8)
    weights = model_weights(minilm_folder())
    model_bytes = sum(weights.values())
    rows: list[dict[str, Any]] = []
    with opts.workdir("disk") as tmp, HubEmulator(mirror_root_with(tmp, {MINILM: minilm_folder()})) as hub:
        work = Path(tmp)
        machines: list[Machine] = []
        numbers = itertools.count()

        def machine() -> Machine:
            m = Machine(work / "machines" / str(next(numbers)))
            machines.append(m)
            return m

        def restart() -> None:
            """The platform replaces the containers: their disks are gone, the volume stays."""
            for m in machines:
                shutil.rmtree(m.root, ignore_errors=True)
            machines.clear()

        def measure(name: str, volume: Path, notes: str = "") -> None:
            disks = count_weights(weights, *(m.root for m in machines))
            on_volume = count_weights(weights, volume)
            rows.append(
                {
                    "scenario": name,
                    "container_bytes": disks.bytes,
                    "volume_bytes": on_volume.bytes,
                    "ratio": (disks.bytes + on_volume.bytes) / model_bytes,
                    "hub_bytes": sum(n for f, n in hub.stats.bytes_per_file.items() if f.endswith(".safetensors")),
                    "hub_requests": hub.stats.requests,
                    "notes": notes,
                }
            )
            hub.reset_stats()

        if SEED_BEFORE in scenarios:
            volume = _fresh(work / "seed-before-volume")
            (volume / "models").mkdir()
            for label in ("", ", after a restart"):
                image = work / "image-tmp-models"
                if machines:  # the new container comes from the same image, /tmp/models and all: no new download
                    machines[0].build_cache.rename(image)
                restart()
                m = machine()
                if image.exists():
                    image.rename(m.build_cache)
                else:  # the image build's RUN step
                    env = m.env(
                        HF_ENDPOINT=hub.url, HF_HOME=str(m.build_cache), HF_HUB_CACHE=str(m.build_cache / "hub")
                    )
                    command = [python(), "-m", "bench.baselines.seed_before", "build", MINILM]
                    _check(subprocess.run(command, env=env, **_QUIET))
                env = m.env(BENCH_BUILD_CACHE=str(m.build_cache), BENCH_VOLUME_CACHE=str(volume / "models"))
                _check(subprocess.run([python(), "-m", "bench.baselines.seed_before", "start"], env=env, **_QUIET))
                measure(f"seed before (build to /tmp/models, copytree){label}", volume)
            restart()
        if SEED_AFTER in scenarios:
            volume = _fresh(work / "seed-after-volume")
            for label in ("1 worker", "after a restart"):
                restart()
                m = machine()
                check_all(start_all([_seed_after_command()], [_seed_after_env(m, volume, hub.url)]))
                measure(f"seed after, {label}", volume)
            restart()
        if VOLCACHE in scenarios:
            volume = _fresh(work / "volcache-volume")
            m = machine()
            check_all(start_all([_worker_command()], [_volcache_env(m, volume, hub.url)]))
            measure("volcache, 1 worker", volume)
            restart()
            volume = _fresh(work / "volcache-volume-many")
            envs = [_volcache_env(machine(), volume, hub.url) for _ in range(workers)]
            check_all(start_all([_worker_command()] * workers, envs))
            measure(f"volcache, {workers} workers at once", volume)
            restart()
            m = machine()
            check_all(start_all([_worker_command()], [_volcache_env(m, volume, hub.url)]))
            measure("volcache, after a restart", volume)
        layouts = _layouts(work / "layouts") if LAYOUTS in scenarios else []
    return _section(opts, rows, model_bytes, layouts)


def _layouts(work: Path) -> list[dict[str, Any]]:
    """Weight bytes kept by each way of filling the volume, and the weight bytes the loader opened."""
    from huggingface_hub import snapshot_download

    from volcache import ModelStore, Settings
    from volcache.store.selection import is_weight_file
    from volcache.testing import HubEmulator, mirror_root_with
    from volcache.testing import models as tiny
    from volcache.testing.loaders import LoadJob, strace_available, trace_loads

    if not strace_available():
        return [{"layout": "skipped: strace is missing or may not trace here"}]
    builders = {
        "org/sharded": tiny.build_tiny_sharded_lm,
        "org/original": tiny.build_tiny_lm_with_original,
        "org/st-exports": tiny.build_tiny_st_with_exports,
        "org/tiny-sd": tiny.build_tiny_diffusers_repo,
        "org/tiny-gguf": tiny.build_tiny_gguf_repo,
    }
    folders = {repo: build(work / "built" / repo.replace("/", "--")) for repo, build in builders.items()}
    fetched = []
    with HubEmulator(mirror_root_with(work, folders)) as hub:
        for number, (_label, repo, _loader, request) in enumerate(LAYOUT_CASES):
            volume = _fresh(work / f"volume-{number}")
            env = {"VOLCACHE_VOLUME": str(volume), "VOLCACHE_FREE_MARGIN": "0", "HF_ENDPOINT": hub.url, **request}
            store = ModelStore(Settings.from_env(env))
            plan = store.plan(repo)
            snapshot = store.resolve(repo).path
            plain = Path(snapshot_download(repo, cache_dir=work / f"plain-{number}", endpoint=hub.url))
            fetched.append((plan, snapshot, plain))
    jobs = [
        LoadJob(c[2], snap, c[3].get("MODEL_VARIANT", ""))
        for c, (_, snap, _) in zip(LAYOUT_CASES, fetched, strict=True)
    ]
    trace = trace_loads(jobs, child_env(HF_HUB_OFFLINE="1"))  # one process: torch imported once
    rows = []
    for (label, *_), (plan, snapshot, plain) in zip(LAYOUT_CASES, fetched, strict=True):
        ours, theirs = _weight_blobs(snapshot, is_weight_file), _weight_blobs(plain, is_weight_file)
        rows.append(
            {
                "layout": label,
                "opened": sum(size for blob, size in ours.items() if blob in trace.opened),
                "volcache": sum(ours.values()),
                "snapshot_download": sum(theirs.values()),
                "whole_repo": plan.total_weight_bytes,
            }
        )
    return rows


def _weight_blobs(snapshot: Path, is_weight: Any) -> dict[Path, int]:
    """The blobs a snapshot's weight files point at, with their sizes (each blob once)."""
    found = {}
    for path in snapshot.rglob("*"):
        if path.is_file() and is_weight(path.name):
            blob = path.resolve()
            found[blob] = blob.stat().st_size
    return found


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


_QUIET: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "cwd": REPO_ROOT}


def _check(proc: subprocess.CompletedProcess[bytes]) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args} exited {proc.returncode}:\n{proc.stdout.decode(errors='replace')[-3000:]}")


def _job() -> str:
    return json.dumps({"input": {"input": SENTENCES}})


def _worker_command() -> list[str]:
    return [python(), "-m", "volcache.worker", "--test_input", _job()]


def _seed_after_command() -> list[str]:
    return [python(), "-m", "bench.baselines.seed_after", "--test_input", _job()]


def _volcache_env(m: Machine, volume: Path, hub_url: str) -> dict[str, str]:
    return m.env(
        HF_ENDPOINT=hub_url,
        MODEL_NAME=MINILM,
        VOLCACHE_VOLUME=str(volume),
        VOLCACHE_EPHEMERAL=str(m.tmp / "volcache"),
        VOLCACHE_STALE_CACHES=str(m.build_cache),
        VOLCACHE_FREE_MARGIN="0",
    )


def _seed_after_env(m: Machine, volume: Path, hub_url: str) -> dict[str, str]:
    cache = str(volume / "models")
    return m.env(
        HF_ENDPOINT=hub_url,
        MODEL_NAME=MINILM,
        HF_HOME=cache,
        TRANSFORMERS_CACHE=cache,
        HF_HUB_CACHE=f"{cache}/hub",
        TORCH_HOME=f"{cache}/torch",
        BENCH_VOLUME_CACHE=cache,
        BENCH_BUILD_CACHE=str(m.build_cache),
    )


def render(opts: Options, data: dict[str, Any]) -> Section:
    """The section again from its JSON (`python -m bench --render`), without measuring."""
    return _section(opts, data["rows"], int(data["model_bytes"]), data.get("layouts", []))


def _section(opts: Options, rows: list[dict[str, Any]], model_bytes: int, layouts: list[dict[str, Any]]) -> Section:
    lines = [
        "## Disk: weight bytes on all disks ÷ model bytes (all-MiniLM-L6-v2)",
        "",
        f"Model weights: {mb(model_bytes)} (`model.safetensors`). Each worker has its own container disk; "
        "the workers of a scenario share one volume; a restart replaces the containers (their disks are gone) and "
        "keeps the volume. Hub: weight bytes the emulator served in that step ÷ model bytes.",
        "",
        table(
            ["scenario", "container disks", "volume", "all disks ÷ model", "Hub ÷ model", "Hub requests"],
            [
                [
                    r["scenario"],
                    mb(r["container_bytes"]),
                    mb(r["volume_bytes"]),
                    f"**{r['ratio']:.2f}**",
                    f"{r['hub_bytes'] / model_bytes:.2f}×",
                    r["hub_requests"],
                ]
                for r in rows
            ],
        ),
        "",
    ]
    ours = [r for r in rows if r["scenario"].startswith("volcache")]
    if ours:
        worst = max(r["ratio"] for r in ours)
        met = "met" if all(abs(r["ratio"] - 1.0) < 0.005 for r in ours) else "**missed**"
        lines.append(f"- Target disk ratio 1.00 in every volcache scenario: worst {worst:.2f} ({met}).")
        many = [r for r in ours if "at once" in r["scenario"]]
        if many:
            hub = many[0]["hub_bytes"] / model_bytes
            met = "met" if hub <= 1.005 + 0.01 else "**missed**"
            lines.append(f"- Target Hub bytes 1.00× for {many[0]['scenario'][10:]}: {hub:.2f}× ({met}).")
        lines.append("")
    plots = []
    plot = bar_plot(
        opts.out / "disk.png",
        "Weight bytes on all disks ÷ model bytes",
        [r["scenario"].replace(" (build to /tmp/models, copytree)", "").replace(", ", ",\n") for r in rows],
        {"all disks ÷ model": [Summary.of([r["ratio"]]) for r in rows]},
        ylabel="copies of the weights",
        hline=(1.0, "one copy"),
    )
    if plot:
        plots.append(plot)
        lines += ["![disk](disk.png)", ""]
    lines += _layouts_table(layouts)
    return Section("disk", "\n".join(lines), {"model_bytes": model_bytes, "rows": rows, "layouts": layouts}, plots)


def _layouts_table(layouts: list[dict[str, Any]]) -> list[str]:
    from volcache._settings import format_bytes

    if not layouts:
        return []
    lines = ["## Disk per layout: weight bytes on the volume ÷ weight bytes the loader opened", ""]
    if "opened" not in layouts[0]:
        return [*lines, f"- {layouts[0]['layout']}", ""]
    ways = ("volcache", "snapshot_download", "whole_repo")
    lines += [
        "Tiny repos built at test time in the layouts real repos ship; the loader's opens recorded with strace. "
        "`snapshot_download`: no patterns; whole repo: what RunPod's cached models store.",
        "",
        table(
            ["layout", "opened by the loader", "volcache", "snapshot_download", "whole repo"],
            [
                [
                    r["layout"],
                    format_bytes(r["opened"]),
                    *(
                        f"**{r[w] / r['opened']:.2f}**" if w == "volcache" else f"{r[w] / r['opened']:.2f}"
                        for w in ways
                    ),
                ]
                for r in layouts
            ],
        ),
        "",
    ]
    worst = max(r["volcache"] / r["opened"] for r in layouts)
    met = "met" if all(r["volcache"] == r["opened"] for r in layouts) else "**missed**"
    lines += [f"- Target 1.00 for volcache on every layout: worst {worst:.2f} ({met}).", ""]
    return lines
