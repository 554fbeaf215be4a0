"""`volcache fetch` and `volcache ls`."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

import click

from .._logging import setup_logging
from .._settings import format_bytes
from ..store import pin
from . import settings as current_settings

if TYPE_CHECKING:
    from ..store.selection import Plan


@click.command()
@click.argument("model", required=False)
@click.option("--revision", "-r", default=None, help="Branch, tag or commit (default: MODEL_REVISION or main).")
@click.option("--variant", default=None, help="The weight variant, e.g. fp16 (default: MODEL_VARIANT).")
@click.option(
    "--file", "model_file", default=None, help="A glob choosing the weights, e.g. '*Q4_K_M.gguf' (MODEL_FILE)."
)
@click.option("--plan", "plan_only", is_flag=True, help="Show every file kept or skipped and why; download nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --plan: print the plan as JSON.")
def fetch(
    model: str | None, revision: str | None, variant: str | None, model_file: str | None, plan_only: bool, as_json: bool
) -> None:
    """Download MODEL onto the volume once, or find it there; print its snapshot path last.

    \b
    MODEL defaults to MODEL_NAME. Safe to run from many workers at once: one downloads
    under the volume lease, the others wait and reuse its copy. Only the files the loader
    opens are downloaded: the shards an index names, the diffusers components and variant,
    the one GGUF file chosen. --plan shows that choice and downloads nothing.
    \b
    Examples:
      volcache fetch sentence-transformers/all-MiniLM-L6-v2
      volcache fetch stabilityai/stable-diffusion-xl-base-1.0 --variant fp16 --plan
      volcache fetch bartowski/Llama-3.2-1B-Instruct-GGUF --file '*Q4_K_M.gguf'
      VOLCACHE_VOLUME=/mnt/vol HF_ENDPOINT=http://127.0.0.1:8088 volcache fetch org/name -r main
    """
    if as_json and not plan_only:
        raise click.UsageError("--json goes with --plan.")
    settings = current_settings()
    settings = dataclasses.replace(
        settings, variant=variant or settings.variant, model_file=model_file or settings.model_file
    )
    setup_logging(settings.log_level)
    pin(settings)
    from ..store import ModelStore

    store = ModelStore(settings)
    if plan_only:
        _show_plan(store.plan(model, revision), as_json)
        return
    resolution = store.resolve(model, revision)
    click.echo(
        f"{resolution.model}@{resolution.revision}: {resolution.source} "
        f"({format_bytes(resolution.bytes)}, downloaded {format_bytes(resolution.downloaded_bytes)}, "
        f"selection {resolution.selection.label})",
        err=True,
    )
    click.echo(str(resolution.path))


def _show_plan(plan: Plan, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(plan.to_json(), indent=1))
        return
    click.echo(f"{plan.model}@{plan.commit[:8]}: {plan.layout} layout, selection {plan.selection.label}")
    for f in plan.files:
        click.echo(f"{'keep' if f.keep else 'skip':<5} {format_bytes(f.size):>10}  {f.path}  ({f.reason})")
    click.echo(
        f"total: keep {len(plan.kept)} of {len(plan.files)} files, {format_bytes(plan.kept_bytes)} of "
        f"{format_bytes(plan.total_bytes)} ({plan.kept_bytes} of {plan.total_bytes} bytes); weights "
        f"{format_bytes(plan.kept_weight_bytes)} of {format_bytes(plan.total_weight_bytes)}"
    )


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
    header = f"{'MODEL':<48} {'REVISION':<12} {'COMMIT':<10} {'SIZE':>10}  {'VARIANT':<10} STATE"
    click.echo(header)
    for i in infos:
        refs = ",".join(i.refs) or "-"
        variant = ",".join(i.selections) or "-"
        line = f"{i.model:<48} {refs:<12} {i.commit[:8]:<10} {format_bytes(i.bytes):>10}  {variant:<10} {i.state}"
        click.echo(line + (f"  ({i.note})" if i.note else ""))
