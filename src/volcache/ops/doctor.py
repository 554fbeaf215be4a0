"""`volcache doctor`: small, fail-soft probes of a deployment, each with a status and a fix.

A probe that crashes becomes a warning about itself; the others still run. `fail` means a
contract is broken (the volume is missing or read-only, the cache cannot hold symlinks,
weights sit on the container disk); `warn` means something to look at.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from .._errors import SymlinksUnsupported
from .._settings import Settings, format_bytes
from ..store import (
    Filter,
    WeightFile,
    cache_environment,
    disk_usage,
    is_mounted,
    iter_unique,
    probe_symlinks,
    scan_volume,
    walk_weights,
)

Status = Literal["ok", "warn", "fail"]
SymlinkFn = Callable[[str, Path], None]

CONTAINER_ROOTS = (Path("/tmp"), Path("~/.cache"), Path("/app"), Path("/root"), Path("/workspace"))
CONTAINER_MIN_FREE = 1_000_000_000
GPU_DEVICE_PATTERNS = ("nvidia[0-9]*", "kfd", "dxg")
_SUBPROCESS_TIMEOUT = 30.0
_SHOWN = 5

_FLOCK_CHILD = """
import fcntl, sys
f = open(sys.argv[1], "rb")
try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(1)
except OSError as exc:
    print(exc)
    sys.exit(2)
sys.exit(0)
"""

_HUB_PATHS_CHILD = """
import json, os
import huggingface_hub.constants as c
print(json.dumps({"HF_HOME": c.HF_HOME, "HF_HUB_CACHE": c.HF_HUB_CACHE,
                  "TORCH_HOME": os.environ.get("TORCH_HOME"),
                  "HF_HUB_DISABLE_TELEMETRY": os.environ.get("HF_HUB_DISABLE_TELEMETRY")}))
"""


@dataclasses.dataclass(frozen=True)
class Probe:
    """The result of one check: `ok`, `warn` or `fail`, what was seen, and what to do."""

    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclasses.dataclass(frozen=True)
class DoctorContext:
    """What the probes look at; tests swap `symlink` and the container roots."""

    settings: Settings
    container_roots: tuple[Path, ...] = CONTAINER_ROOTS
    symlink: SymlinkFn = lambda src, dst: os.symlink(src, dst)  # late-bound: tests may patch os.symlink
    scan_seconds: float = 15.0
    scan_depth: int = 12


def run_doctor(ctx: DoctorContext, skip: Iterable[str] = ()) -> list[Probe]:
    """Run every probe not in `skip`; a probe that raises becomes a `warn` about itself."""
    skipped = set(skip)
    results: list[Probe] = []
    for name, probe in PROBES.items():
        if name in skipped:
            continue
        try:
            results.extend(probe(ctx))
        except Exception as exc:
            results.append(Probe(name, "warn", f"the probe itself failed: {type(exc).__name__}: {exc}"))
    return results


# -- the volume -----------------------------------------------------------------------------------
def probe_volume(ctx: DoctorContext) -> list[Probe]:
    vol = ctx.settings.volume
    attach = "Attach the network volume to the endpoint (RunPod mounts it at /runpod-volume) or set VOLCACHE_VOLUME."
    if not vol.is_dir():
        return [Probe("volume", "fail", f"{vol} does not exist or is not a folder.", attach)]
    try:
        fd, name = tempfile.mkstemp(prefix=".volcache-doctor-", dir=vol)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return [Probe("volume", "fail", f"{vol} is not writable ({exc.strerror}).", f"Mount {vol} read-write.")]
    if not is_mounted(vol):
        detail = f"{vol} is writable but not a mount point: files there live in the container and vanish with it."
        return [Probe("volume", "warn", detail, attach)]
    return [Probe("volume", "ok", f"{vol} is a writable mount point.")]


def probe_links(ctx: DoctorContext) -> list[Probe]:
    s = ctx.settings
    folder = s.hub_cache if s.hub_cache.is_dir() else s.volume
    if not folder.is_dir():
        return [Probe("symlinks", "warn", f"not tested: {folder} does not exist.")]
    try:
        probe_symlinks(folder, ctx.symlink)
    except SymlinksUnsupported as exc:
        reason = exc.message.split("(", 1)[-1].split(")", 1)[0]
        detail = (
            f"{folder} cannot hold symlinks ({reason}): huggingface_hub would then store a second copy of every file."
        )
        fix = "Use a volume whose filesystem supports symlinks (RunPod network volumes do)."
        return [Probe("symlinks", "fail", detail, fix)]
    return [Probe("symlinks", "ok", f"{folder} holds symlinks.")]


def probe_flock(ctx: DoctorContext) -> list[Probe]:
    import fcntl

    vol = ctx.settings.volume
    if not vol.is_dir():
        return [Probe("flock", "warn", f"not tested: {vol} does not exist.")]
    try:
        fd, name = tempfile.mkstemp(prefix=".volcache-doctor-flock-", dir=vol)
    except OSError as exc:
        return [Probe("flock", "warn", f"not tested: cannot write in {vol} ({exc.strerror}).")]
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            return [_flock_probe("warn", f"flock is not supported on {vol} ({exc.strerror}).")]
        child = subprocess.run(
            [sys.executable, "-c", _FLOCK_CHILD, name], capture_output=True, text=True, timeout=_SUBPROCESS_TIMEOUT
        )
    finally:
        os.close(fd)
        os.unlink(name)
    if child.returncode == 1:
        return [_flock_probe("ok", f"flock excludes a second process on this host on {vol}.")]
    if child.returncode == 0:
        return [_flock_probe("warn", f"flock does NOT exclude on {vol}: a second process got the same lock.")]
    return [_flock_probe("warn", f"flock could not be tested on {vol}: {child.stdout.strip() or child.stderr.strip()}")]


def _flock_probe(status: Status, seen: str) -> Probe:
    lease = (
        " volcache's download lease does not depend on flock: it is an O_EXCL lease file with a heartbeat, "
        "so downloads stay single either way."
    )
    fix = (
        ""
        if status == "ok"
        else "Nothing to change for volcache; do not rely on flock-based tools (plain `hf download`) across workers."
    )
    return Probe("flock", status, seen + lease, fix)


def probe_space(ctx: DoctorContext) -> list[Probe]:
    s = ctx.settings
    probes = []
    if s.volume.is_dir():
        free, total = disk_usage(s.volume)
        detail = f"{format_bytes(free)} free of {format_bytes(total)} on {s.volume}."
        if free < s.free_margin:
            fix = "Free space with `volcache prune --keep-bytes ...`, or grow the network volume."
            probes.append(Probe("volume-space", "warn", detail + " Less than VOLCACHE_FREE_MARGIN.", fix))
        else:
            probes.append(Probe("volume-space", "ok", detail))
    disk = _existing_parent(s.ephemeral)
    free, total = disk_usage(disk)
    detail = f"{format_bytes(free)} free of {format_bytes(total)} on the container disk ({disk})."
    if free < CONTAINER_MIN_FREE:
        fix = "Raise the container disk size of the endpoint, or remove files written to it."
        probes.append(Probe("container-space", "warn", detail, fix))
    else:
        probes.append(Probe("container-space", "ok", detail))
    return probes


def _existing_parent(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.is_dir():
            return p
    return Path("/")


# -- cache variables ------------------------------------------------------------------------------
def probe_cache_paths(ctx: DoctorContext) -> list[Probe]:
    wanted = cache_environment(ctx.settings)
    child = subprocess.run(
        [sys.executable, "-c", _HUB_PATHS_CHILD], capture_output=True, text=True, timeout=_SUBPROCESS_TIMEOUT
    )
    if child.returncode != 0:
        tail = (child.stderr.strip().splitlines() or ["no output"])[-1]
        return [Probe("cache-paths", "warn", f"could not import huggingface_hub: {tail}")]
    seen: dict[str, Any] = json.loads(child.stdout)
    wrong = {k: v for k, v in seen.items() if not _same(v, wanted.get(k))}
    notes = _already_imported(wanted)
    if not wrong:
        detail = f"a process started here would use HF_HUB_CACHE={seen['HF_HUB_CACHE']} (on the volume)."
        return [Probe("cache-paths", "warn" if notes else "ok", detail + notes)]
    where = ", ".join(f"{k}={v} (volcache pins {wanted.get(k)})" for k, v in wrong.items())
    detail = (
        f"before volcache.pin(), a process started here would use {where}. The worker pins them at start, but "
        "any Hugging Face import before pin() writes to the container disk." + notes
    )
    fix = "Set them in the Dockerfile: " + " ".join(f"ENV {k}={wanted[k]}" for k in wrong if k in wanted)
    return [Probe("cache-paths", "warn", detail, fix)]


def _same(seen: object, wanted: str | None) -> bool:
    if wanted is None or seen is None:
        return seen == wanted
    if wanted == "1":
        return str(seen).lower() in ("1", "true", "yes", "on")
    return os.path.realpath(str(seen)) == os.path.realpath(wanted)


def _already_imported(wanted: dict[str, str]) -> str:
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is None:
        return ""
    cache = getattr(constants, "HF_HUB_CACHE", None)
    if _same(cache, wanted["HF_HUB_CACHE"]):
        return ""
    return f" huggingface_hub is already imported in this process with HF_HUB_CACHE={cache}."


# -- weights on the container disk ----------------------------------------------------------------
def probe_container_weights(ctx: DoctorContext) -> list[Probe]:
    s = ctx.settings
    baked = [c for c in s.extra_caches if c.is_dir()]
    skip = (s.volume, s.home, *s.readonly_caches)
    deadline = time.monotonic() + ctx.scan_seconds
    roots = [r.expanduser() for r in ctx.container_roots]
    keep = Filter.likely()
    walks = [walk_weights(r, skip=skip, max_depth=ctx.scan_depth, deadline=deadline, keep=keep) for r in roots]
    stray = [f for _, f in iter_unique(walks)]
    searched = ", ".join(str(r) for r in roots if r.is_dir()) or "none of the roots exist"
    cut = sorted({f"{w.root}: {w.truncated}" for w in walks if w.truncated})
    note = (f" Search incomplete: {'; '.join(cut)}." if cut else "") + (
        f" Baked caches used in place, not counted: {', '.join(map(str, baked))}." if baked else ""
    )
    if stray:
        return [_stray_probe(stray, searched, note, s)]
    status: Status = "warn" if cut else "ok"
    return [Probe("container-weights", status, f"no weight files on the container disk ({searched}).{note}")]


def _stray_probe(stray: Sequence[WeightFile], searched: str, note: str, s: Settings) -> Probe:
    total = sum(f.size for f in stray)
    shown = ", ".join(str(f.link or f.path) for f in stray[:_SHOWN])
    more = f" and {len(stray) - _SHOWN} more" if len(stray) > _SHOWN else ""
    stale = [f for f in stray if any(p == f.path or p in f.path.parents for p in s.stale_caches)]
    detail = (
        f"{len(stray)} weight file(s) ({format_bytes(total)}) on the container disk: {shown}{more}. "
        f"Searched {searched}.{note}"
    )
    fix = (
        "The container disk must hold no weights: delete them, download at run time onto the volume "
        "(`volcache fetch`), and remove build-time downloads and copies from the image (`volcache audit` finds them)."
    )
    if stale:
        fix += f" {len(stale)} are in stale caches the worker removes at start (VOLCACHE_STALE_CACHES)."
    return Probe("container-weights", "fail", detail, fix)


# -- RunPod, GPU, models --------------------------------------------------------------------------
def probe_runpod_cache(ctx: DoctorContext) -> list[Probe]:
    s = ctx.settings
    cache = s.runpod_cache
    if not cache.is_dir():
        return [Probe("runpod-cache", "ok", f"no RunPod cached models at {cache} (the volume's cache is used).")]
    try:
        repos = sorted(p.name for p in cache.iterdir() if p.name.startswith("models--"))
    except OSError as exc:
        return [Probe("runpod-cache", "warn", f"{cache} is not readable ({exc.strerror}).")]
    names = [r.removeprefix("models--").replace("--", "/") for r in repos]
    served = any(n.lower() == s.model.lower() for n in names)
    detail = f"{len(names)} cached models at {cache}" + (f": {', '.join(names[:_SHOWN])}" if names else "") + "."
    if served:
        detail += f" MODEL_NAME={s.model} is served from it, read-only, in place."
    return [Probe("runpod-cache", "ok", detail)]


def probe_gpu(ctx: DoctorContext) -> list[Probe]:
    if not gpu_device_nodes():  # torch.cuda cannot see a GPU without them: skip the slow torch import
        return [Probe("gpu", "warn", "none: no GPU device nodes (/dev/nvidia*, /dev/kfd).", "Fine for CPU models.")]
    torch_seen = _torch_gpus()
    if torch_seen:
        return [Probe("gpu", "ok", f"torch sees {torch_seen}.")]
    smi = _nvidia_smi()
    if smi:
        detail = f"nvidia-smi lists {smi}, but torch " + ("cannot use it." if _has_torch() else "is not installed.")
        fix = "Install a CUDA build of torch that matches the driver." if _has_torch() else ""
        return [Probe("gpu", "warn", detail, fix)]
    return [Probe("gpu", "warn", "none: no GPU found (torch.cuda and nvidia-smi).", "Fine for CPU models.")]


def gpu_device_nodes() -> list[str]:
    """GPU device files in /dev (NVIDIA, ROCm, WSL)."""
    return sorted(str(p) for pattern in GPU_DEVICE_PATTERNS for p in Path("/dev").glob(pattern))


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def _torch_gpus() -> str:
    if not _has_torch():
        return ""
    try:
        import torch

        if not torch.cuda.is_available():
            return ""
        names = [str(torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]
    except Exception:
        return ""
    return f"{len(names)} GPU(s): {', '.join(names)}"


def _nvidia_smi() -> str:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ""
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=_SUBPROCESS_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return f"{len(lines)} GPU(s): {'; '.join(lines)}" if out.returncode == 0 and lines else ""


def probe_models(ctx: DoctorContext) -> list[Probe]:
    infos = list(scan_volume(ctx.settings, readonly=False).snapshots)
    broken = [i for i in infos if not i.complete]
    if not infos:
        return [Probe("models", "ok", f"no models in {ctx.settings.hub_cache} yet.")]
    size = format_bytes(sum(i.bytes for i in infos if i.complete))
    if not broken:
        return [Probe("models", "ok", f"{len(infos)} complete snapshots ({size}) in {ctx.settings.hub_cache}.")]
    shown = "; ".join(f"{i.model}@{i.commit[:8]}: {i.note}" for i in broken[:_SHOWN])
    detail = f"{len(broken)} of {len(infos)} snapshots are not complete ({shown}). They are never loaded."
    fix = "`volcache verify --repair MODEL` for damaged files, `volcache fetch MODEL` to finish, or `volcache rm`."
    return [Probe("models", "warn", detail, fix)]


PROBES: dict[str, Callable[[DoctorContext], list[Probe]]] = {
    "volume": probe_volume,
    "symlinks": probe_links,
    "flock": probe_flock,
    "space": probe_space,
    "cache-paths": probe_cache_paths,
    "container-weights": probe_container_weights,
    "runpod-cache": probe_runpod_cache,
    "gpu": probe_gpu,
    "models": probe_models,
}
