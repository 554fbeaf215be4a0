"""`volcache serve`: run the RunPod worker; RunPod's own flags pass through to its SDK."""

from __future__ import annotations

import importlib.util

import click

from .._errors import ConfigError

# What `pip install 'volcache[worker]'` brings (pyproject.toml): the worker cannot start without them.
WORKER_EXTRA = ("torch", "transformers", "sentence_transformers", "runpod", "pydantic")


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require_worker_extra() -> None:
    """Refuse with one line naming the extra to install, before any import of the worker can crash."""
    missing = [name for name in WORKER_EXTRA if not _installed(name)]
    if missing:
        raise ConfigError(
            f"`volcache serve` needs the worker extra ({', '.join(missing)} missing). "
            "Fix: pip install 'volcache[worker]'."
        )


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]}
)
@click.argument("runpod_args", nargs=-1, type=click.UNPROCESSED)
def serve(runpod_args: tuple[str, ...]) -> None:
    """Serve MODEL_NAME as a RunPod serverless worker, weights loaded in place from the volume.

    \b
    Start-up: settings, pin the caches, remove stale caches, find or download the model
    once on the volume, load it, warm it up, then RunPod's job loop. Every other argument
    goes to RunPod's SDK:
      --test_input JSON        run one job locally and exit (0 on success, 1 on error)
      --rp_serve_api           serve RunPod's local API (/runsync, /run, /stream, /status)
      --rp_api_port N          its port (default 8000); --rp_api_host HOST (default localhost)
    \b
    Examples:
      volcache serve --test_input '{"input": {"input": ["a sentence"]}}'
      MODEL_NAME=org/name MODEL_TASK=text-generation volcache serve --rp_serve_api --rp_api_port 8000
      VOLCACHE_VOLUME=./vol HF_ENDPOINT=http://127.0.0.1:8088 volcache serve --rp_serve_api
    """
    require_worker_extra()
    from ..worker import start

    start(list(runpod_args))
