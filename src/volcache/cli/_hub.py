"""`volcache hub serve`: model folders on disk served as a Hugging Face Hub, for air-gapped machines and tests."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from types import FrameType

import click

from ..testing.hub import DEFAULT_LFS_THRESHOLD, Faults, HubEmulator


@click.group()
def hub() -> None:
    """An offline Hugging Face Hub that serves model folders from disk."""


@hub.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8088, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option(
    "--stats-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Rewrite this JSON file with request and byte counts after each request.",
)
@click.option("--delay", default=0.0, type=click.FloatRange(min=0), help="Seconds to wait before each response.")
@click.option("--bandwidth", type=click.IntRange(min=1), help="Cap each download at this many bytes per second.")
@click.option(
    "--lfs-threshold",
    default=DEFAULT_LFS_THRESHOLD,
    show_default=True,
    type=click.IntRange(min=0),
    help="Files this large (bytes) or with a weight suffix are served as LFS, with their sha256 as ETag.",
)
def serve(
    root: Path,
    host: str,
    port: int,
    stats_file: Path | None,
    delay: float,
    bandwidth: int | None,
    lfs_threshold: int,
) -> None:
    """Serve ROOT/<org>/<name>/ folders through the Hub's HTTP API until Ctrl-C.

    \b
    Example:
      volcache hub serve ./mirror --port 8088
      HF_ENDPOINT=http://127.0.0.1:8088 volcache fetch org/name
    """
    try:
        emulator = HubEmulator(
            root,
            host=host,
            port=port,
            faults=Faults(delay=delay, bandwidth=bandwidth),
            lfs_threshold=lfs_threshold,
            stats_file=stats_file,
        )
    except OSError as exc:  # the port is taken, or the stats file's folder is missing
        raise click.ClickException(exc.strerror or str(exc)) from exc
    click.echo(f"Serving {root} as a Hugging Face Hub at {emulator.url} (set HF_ENDPOINT={emulator.url})")
    # SIGTERM (docker stop, a test's terminate()) ends the server the same clean way as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C or SIGTERM: serve_forever has closed the socket
        emulator.serve_forever()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
