"""`volcache fetch` and `volcache ls`."""

from __future__ import annotations

import json

import click

from .._logging import setup_logging
from .._settings import format_bytes
from ..store import pin
from . import settings as current_settings


@click.command()
@click.argument("model", required=False)
@click.option("--revision", "-r", default=None, help="Branch, tag or commit (default: MODEL_REVISION or main).")
def fetch(model: str | None, revision: str | None) -> None:
    """Download MODEL onto the volume once, or find it there; print its snapshot path last.

    \b
    MODEL defaults to MODEL_NAME. Safe to run from many workers at once: one downloads
    under the volume lease, the others wait and reuse its copy.
    \b
    Examples:
      volcache fetch sentence-transformers/all-MiniLM-L6-v2
      VOLCACHE_VOLUME=/mnt/vol HF_ENDPOINT=http://127.0.0.1:8088 volcache fetch org/name -r main
    """
    settings = current_settings()
    setup_logging(settings.log_level)
    pin(settings)
    from ..store import ModelStore

    resolution = ModelStore(settings).resolve(model, revision)
    click.echo(
        f"{resolution.model}@{resolution.revision}: {resolution.source} "
        f"({format_bytes(resolution.bytes)}, downloaded {format_bytes(resolution.downloaded_bytes)})",
        err=True,
    )
    click.echo(str(resolution.path))


@click.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def ls(as_json: bool) -> None:
    """List the models on the volume: name, revision, bytes, complete or not.

    \b
    Examples:
      volcache ls
      VOLCACHE_VOLUME=/mnt/vol volcache ls --json
    """
    from ..store import scan_volume

    settings = current_settings()
    infos = scan_volume(settings).snapshots
    if as_json:
        rows = [i.to_json() for i in infos]
        click.echo(json.dumps(rows, indent=1))
        return
    if not infos:
        click.echo(f"no models in {settings.hub_cache}")
        return
    header = f"{'MODEL':<48} {'REVISION':<12} {'COMMIT':<10} {'SIZE':>10}  STATE"
    click.echo(header)
    for i in infos:
        refs = ",".join(i.refs) or "-"
        line = f"{i.model:<48} {refs:<12} {i.commit[:8]:<10} {format_bytes(i.bytes):>10}  {i.state}"
        click.echo(line + (f"  ({i.note})" if i.note else ""))
