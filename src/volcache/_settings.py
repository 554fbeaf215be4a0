"""Every setting volcache has, read from the environment once into one frozen object.

This is the only module that reads `os.environ`. Precedence: an explicit argument
(`Settings.from_env(env=...)` or `dataclasses.replace`) over the process environment
over the defaults below, which follow the seed's layout on `/runpod-volume`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from ._errors import ConfigError

LoadStrategy = Literal["auto", "mmap", "read", "prefetch"]
# VOLCACHE_DTYPE: the accepted spellings and the torch dtype name each means.
_DTYPES = {"auto": "auto", "float16": "float16", "fp16": "float16", "half": "float16",
           "bfloat16": "bfloat16", "bf16": "bfloat16", "float32": "float32", "fp32": "float32"}  # fmt: skip

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4,
}  # fmt: skip


MAX_DOWNLOAD_STREAMS = 64


def parse_size(text: str, *, name: str = "size") -> int:
    """Parse `123`, `500MB`, `1.5GiB` into bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ConfigError(f"{name}={text!r} is not a size; use bytes or a unit, e.g. 500MB or 2GiB.")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(text: str, *, name: str = "duration") -> float:
    """Parse `90`, `90s`, `15m`, `2h`, `7d` into seconds."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*", text.lower())
    if not match:
        raise ConfigError(f"{name}={text!r} is not a duration; use seconds or a unit, e.g. 90s, 15m, 2h, 7d.")
    scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * scale


def format_bytes(n: int | float) -> str:
    """Human-readable bytes, decimal units as `df -H` and the Hub show them."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


@dataclasses.dataclass(frozen=True)
class Bucket:
    """An S3-compatible bucket for generated images (RunPod's `BUCKET_*` variables); never logged."""

    endpoint_url: str
    access_key_id: str = dataclasses.field(repr=False)
    secret_access_key: str = dataclasses.field(repr=False)
    name: str | None = None  # BUCKET_NAME; RunPod's helper uses the month (`%m-%y`) when unset

    def credentials(self) -> dict[str, str]:
        """The `bucket_creds` mapping RunPod's upload helpers take."""
        return {
            "endpointUrl": self.endpoint_url,
            "accessId": self.access_key_id,
            "accessSecret": self.secret_access_key,
        }


@dataclasses.dataclass(frozen=True)
class StoreSettings:
    """What the model store and the volume tools need: where the caches are, which model, how to download.

    `ModelStore`, `pin()`, cleanup and the `ops` take this type; they never read the environment.
    """

    # -- the volume and its caches --
    volume: Path = Path("/runpod-volume")
    home: Path = Path("/runpod-volume/models")
    runpod_cache: Path = Path("/runpod-volume/huggingface-cache/hub")
    extra_caches: tuple[Path, ...] = ()
    ephemeral: Path = Path("/tmp/volcache")
    stale_caches: tuple[Path, ...] = ()
    require_volume: bool = False  # VOLCACHE_REQUIRE_VOLUME: refuse to start when the volume is not mounted
    assume_volume: bool = False  # VOLCACHE_ASSUME_VOLUME: treat the folder as the shared volume (local runs, tests)
    user_home: Path | None = None  # $HOME: stale-cache cleanup never deletes it (or what contains it)
    # -- the model --
    model: str = DEFAULT_MODEL
    revision: str = "main"
    include: tuple[str, ...] = ()
    # Which weights of the repo (store/selection.py): the loader's variant and an explicit file.
    variant: str | None = None  # MODEL_VARIANT, e.g. fp16: a component's variant files where it has them
    model_file: str | None = None  # MODEL_FILE, a glob on the repo path, e.g. *Q4_K_M.gguf
    # -- downloading --
    lease_timeout: float = 120.0
    lease_max_wait: float = 3600.0
    free_margin: int = 1024**3
    download_streams: int = 8  # VOLCACHE_DOWNLOAD_STREAMS: streams per large file (1: one stream per file)
    download_part: int = 8 * 1024**2  # VOLCACHE_DOWNLOAD_PART: the smallest part a stream fetches
    offline: bool = False
    endpoint: str | None = None
    hf_token: str | None = dataclasses.field(default=None, repr=False)
    # -- loading (the store picks the read strategy for the snapshot it returns) --
    load: LoadStrategy = "auto"

    @property
    def readonly_caches(self) -> tuple[Path, ...]:
        """Caches used in place and never written: RunPod's cached models, baked images."""
        return (self.runpod_cache, *self.extra_caches)

    def redact(self, text: str) -> str:
        """`text` with the Hugging Face token removed, for logs and error messages."""
        return text.replace(self.hf_token, "hf_***") if self.hf_token else text

    @property
    def hub_cache(self) -> Path:
        return self.home / "hub"

    @property
    def torch_home(self) -> Path:
        return self.home / "torch"

    @property
    def compile_cache(self) -> Path:
        """The engines' compile and kernel caches (vLLM, Inductor, Triton), keyed by what invalidates them."""
        return self.home / "compile"

    @property
    def modules_cache(self) -> Path:
        return self.home / "modules"

    @property
    def records_dir(self) -> Path:
        """volcache's own records, beside the Hub layout (`hf cache` would flag a stranger inside it)."""
        return self.home / ".volcache"


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """What only the RunPod worker needs: the task, the job limits, the device, RunPod's queue flags."""

    task: str | None = None
    concurrency: int = 1
    max_batch: int = 64
    max_input_chars: int = 32_768
    max_new_tokens: int = 512
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:1", ...
    served_model_name: str | None = None  # the model name OpenAI routes report (default MODEL_NAME)
    runpod_job_queue: bool = False  # RUNPOD_WEBHOOK_GET_JOB is set, jobs come from RunPod's queue
    runpod_realtime: bool = False  # RUNPOD_REALTIME_PORT is set, RunPod's realtime API
    # -- image models: VOLCACHE_DTYPE, VOLCACHE_MAX_PIXELS/_STEPS/_IMAGES, BUCKET_* --
    dtype: str = "auto"  # auto (fp16/bf16 on a GPU, float32 on the CPU), float16, bfloat16, float32
    max_pixels: int = 2048 * 1024
    max_steps: int = 100
    max_images: int = 4
    bucket: Bucket | None = dataclasses.field(default=None, repr=False)
    # -- engines (issue 15): which engine runs text generation, and worker-vllm's own variables --
    engine: str | None = None  # MODEL_ENGINE: "vllm" | "transformers"; None: vLLM where installed and a GPU is visible
    max_concurrency: int | None = None  # MAX_CONCURRENCY (worker-vllm's name): jobs at once on the vLLM engine
    # Every upper-case variable as read, for an engine that maps variables to its flags by name (worker-vllm's rule).
    engine_env: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)


@dataclasses.dataclass(frozen=True)
class Settings(WorkerSettings, StoreSettings):
    """volcache's whole configuration: the store's part and the worker's. Build it with `Settings.from_env()`.

    A `Settings` is a `StoreSettings` (pass it to the store as it is) and a `WorkerSettings`.
    """

    log_level: str = "INFO"
    debug: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `env` (default: the process environment)."""
        env = os.environ if env is None else env
        problems: list[str] = []

        def get(name: str, default: str) -> str:
            value = env.get(name, "").strip()
            return value or default

        def flag(name: str) -> bool:
            return get(name, "0").lower() in ("1", "true", "yes", "on")

        def number(name: str, default: float, parse: type[int] | type[float] = float) -> float:
            raw = get(name, str(default))
            try:
                value = parse(raw)
            except ValueError:
                problems.append(f"{name}={raw!r} is not a number (e.g. {name}={default}).")
                return default
            if value <= 0:
                problems.append(f"{name}={raw!r} must be greater than 0.")
                return default
            return value

        def size(name: str, default: str) -> int:
            try:
                return parse_size(get(name, default), name=name)
            except ConfigError as exc:
                problems.append(str(exc))
                return 0

        home_dir = Path(env.get("HOME") or "/root")
        volume = Path(get("VOLCACHE_VOLUME", "/runpod-volume")).expanduser()
        home = Path(get("VOLCACHE_HOME", str(volume / "models"))).expanduser()
        stale_default = os.pathsep.join(
            ["/tmp/models", str(home_dir / ".cache/huggingface"), str(home_dir / ".cache/torch")]
        )
        stale_raw = env.get("VOLCACHE_STALE_CACHES", stale_default)
        stale = tuple(Path(p).expanduser() for p in re.split(r"[,:]", stale_raw) if p.strip())
        load = get("VOLCACHE_LOAD", "auto").lower()
        if load not in ("auto", "mmap", "read", "prefetch"):
            problems.append(f"VOLCACHE_LOAD={load!r} is not one of auto, mmap, read, prefetch.")
            load = "auto"
        include = tuple(p.strip() for p in get("VOLCACHE_INCLUDE", "").split(",") if p.strip())
        task = get("MODEL_TASK", "") or None
        dtype = get("VOLCACHE_DTYPE", "auto").lower()
        if dtype not in _DTYPES:
            problems.append(f"VOLCACHE_DTYPE={dtype!r} is not one of {', '.join(_DTYPES)}.")
            dtype = "auto"
        bucket_vars = [get(f"BUCKET_{n}", "") for n in ("ENDPOINT_URL", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY")]
        if any(bucket_vars) and not all(bucket_vars):
            problems.append(
                "BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY go together; set all three."
            )
        variant = get("MODEL_VARIANT", "") or None
        if variant is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", variant):
            problems.append(f"MODEL_VARIANT={variant!r} is not a variant name (e.g. MODEL_VARIANT=fp16).")
            variant = None
        engine = get("MODEL_ENGINE", "").lower() or None
        if engine not in (None, "vllm", "transformers"):
            problems.append(f"MODEL_ENGINE={engine!r} is not one of vllm, transformers.")
            engine = None
        streams = int(number("VOLCACHE_DOWNLOAD_STREAMS", 8, int))
        if streams > MAX_DOWNLOAD_STREAMS:
            problems.append(
                f"VOLCACHE_DOWNLOAD_STREAMS={streams} is more than {MAX_DOWNLOAD_STREAMS} streams per file."
            )
            streams = 8
        part = size("VOLCACHE_DOWNLOAD_PART", "8MiB")
        if part < 64 * 1024 and not any("VOLCACHE_DOWNLOAD_PART" in p for p in problems):
            problems.append(f"VOLCACHE_DOWNLOAD_PART={get('VOLCACHE_DOWNLOAD_PART', '')!r} is below 64KiB.")
        settings = cls(
            volume=volume,
            home=home,
            runpod_cache=Path(get("VOLCACHE_RUNPOD_CACHE", str(volume / "huggingface-cache/hub"))),
            ephemeral=Path(get("VOLCACHE_EPHEMERAL", "/tmp/volcache")),
            model=get("MODEL_NAME", DEFAULT_MODEL),
            revision=get("MODEL_REVISION", "main"),
            task=task,
            stale_caches=stale,
            lease_timeout=number("VOLCACHE_LEASE_TIMEOUT", 120.0),
            lease_max_wait=number("VOLCACHE_LEASE_MAX_WAIT", 3600.0),
            free_margin=size("VOLCACHE_FREE_MARGIN", "1GiB"),
            download_streams=streams,
            download_part=part,
            include=include,
            variant=variant,
            model_file=get("MODEL_FILE", "") or None,
            offline=flag("HF_HUB_OFFLINE"),
            load=load,  # type: ignore[arg-type]
            concurrency=int(number("VOLCACHE_CONCURRENCY", 1, int)),
            max_batch=int(number("VOLCACHE_MAX_BATCH", 64, int)),
            max_input_chars=int(number("VOLCACHE_MAX_INPUT_CHARS", 32_768, int)),
            max_new_tokens=int(number("VOLCACHE_MAX_NEW_TOKENS", 512, int)),
            device=get("VOLCACHE_DEVICE", "auto").lower(),
            dtype=_DTYPES[dtype],
            max_pixels=int(number("VOLCACHE_MAX_PIXELS", 2048 * 1024, int)),
            max_steps=int(number("VOLCACHE_MAX_STEPS", 100, int)),
            max_images=int(number("VOLCACHE_MAX_IMAGES", 4, int)),
            bucket=_bucket(bucket_vars, get("BUCKET_NAME", "")),
            served_model_name=get("OPENAI_SERVED_MODEL_NAME_OVERRIDE", "") or None,
            runpod_job_queue=bool(get("RUNPOD_WEBHOOK_GET_JOB", "")),
            runpod_realtime=get("RUNPOD_REALTIME_PORT", "0") not in ("", "0"),
            log_level=get("VOLCACHE_LOG_LEVEL", "INFO").upper(),
            extra_caches=tuple(Path(p) for p in get("VOLCACHE_EXTRA_CACHES", "").split(",") if p.strip()),
            endpoint=get("HF_ENDPOINT", "") or None,
            hf_token=get("HF_TOKEN", "") or get("HUGGING_FACE_HUB_TOKEN", "") or None,
            debug=flag("VOLCACHE_DEBUG"),
            require_volume=flag("VOLCACHE_REQUIRE_VOLUME"),
            assume_volume=flag("VOLCACHE_ASSUME_VOLUME"),
            user_home=home_dir,
            engine=engine,
            max_concurrency=int(number("MAX_CONCURRENCY", 30, int)) if get("MAX_CONCURRENCY", "") else None,
            engine_env=tuple(sorted((k, v) for k, v in env.items() if re.fullmatch(r"[A-Z][A-Z0-9_]*", k))),
        )
        problems.extend(_overlap_problems(settings))
        if problems:
            raise ConfigError("Invalid configuration: " + " ".join(problems))
        return settings


def _overlap_problems(s: StoreSettings) -> list[str]:
    """The hub cache may not overlap a read-only cache: an incomplete download would be served as complete (I2)."""
    hub = Path(os.path.realpath(s.hub_cache))
    problems = []
    for cache in s.readonly_caches:
        ro = Path(os.path.realpath(cache))
        if hub == ro or ro in hub.parents or hub in ro.parents:
            problems.append(
                f"the hub cache {s.hub_cache} overlaps the read-only cache {cache}: volcache would serve its own "
                "unfinished downloads as read-only models. "
                "Set VOLCACHE_HOME outside it (default $VOLCACHE_VOLUME/models)."
            )
    return problems


def _bucket(variables: list[str], name: str) -> Bucket | None:
    """The bucket the three `BUCKET_*` variables name, or None when they are unset."""
    endpoint, key, secret = variables
    return Bucket(endpoint, key, secret, name or None) if endpoint and key and secret else None
