"""Pin every Hugging Face and torch cache path to the volume before those libraries load (I7).

`huggingface_hub` reads its cache paths once, when `huggingface_hub.constants` is first
imported; transformers and sentence-transformers take them from there. Setting
`os.environ` after that import changes nothing, which is the seed's latent bug. `pin()`
sets the variables and, if the import already happened with other paths, stops loudly.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib import metadata
from pathlib import Path

from .._errors import PinError
from .._settings import StoreSettings

log = logging.getLogger("volcache.pin")


def cache_environment(settings: StoreSettings) -> dict[str, str]:
    """The environment variables that put every cache on the volume (and Xet scratch off it)."""
    env = {
        "HF_HOME": str(settings.home),
        "HF_HUB_CACHE": str(settings.hub_cache),
        "HF_ASSETS_CACHE": str(settings.home / "assets"),
        "TORCH_HOME": str(settings.torch_home),
        "HF_MODULES_CACHE": str(settings.modules_cache),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        # Xet keeps logs and chunk staging under HF_HOME/xet by default: scratch that
        # belongs on the container's ephemeral disk, not on a volume shared by workers.
        "HF_XET_CACHE": str(settings.ephemeral / "xet"),
    }
    if _transformers_major() == 4:
        # transformers 4 still honours TRANSFORMERS_CACHE; 5 ignores it.
        env["TRANSFORMERS_CACHE"] = str(settings.hub_cache)
    return env


def pin(settings: StoreSettings) -> None:
    """Point the Hugging Face and torch caches at the volume. Idempotent.

    Raises `PinError` when `huggingface_hub` was already imported with other cache
    paths: its downloads would go to the container disk despite the variables.
    """
    env = cache_environment(settings)
    _refuse_late_import(settings)
    overridden = {k: os.environ[k] for k, v in env.items() if os.environ.get(k, v) != v}
    for name, old in overridden.items():
        log.warning("volcache: %s was %s; pinned to %s", name, old, env[name])
    os.environ.update(env)


def _refuse_late_import(settings: StoreSettings) -> None:
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is None:
        return
    seen = {
        "HF_HOME": getattr(constants, "HF_HOME", None),
        "HF_HUB_CACHE": getattr(constants, "HF_HUB_CACHE", None),
    }
    wanted = {"HF_HOME": settings.home, "HF_HUB_CACHE": settings.hub_cache}
    wrong = {k: v for k, v in seen.items() if v is None or not _same_path(v, wanted[k])}
    if not wrong:
        return
    where = ", ".join(f"{k}={seen[k]} (wanted {wanted[k]})" for k in wrong)
    importers = [m for m in ("transformers", "sentence_transformers", "diffusers") if m in sys.modules]
    raise PinError(
        f"huggingface_hub was imported before volcache.pin() and already uses {where}"
        + (f"; also imported early: {', '.join(importers)}" if importers else "")
        + ". Downloads would land on the container disk. Fix: call volcache.pin() before importing "
        "huggingface_hub, transformers, sentence_transformers or diffusers (first lines of the "
        "handler), or set these variables in the Dockerfile ENV."
    )


def _same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _transformers_major() -> int | None:
    try:
        return int(metadata.version("transformers").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return None
