"""The `volcache` command line: a group whose subcommands are imported only when run.

Library errors become one readable line on stderr and exit status 1; usage errors exit 2
(click's convention). Set VOLCACHE_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from .._settings import Settings

# name -> "module:attribute" of a click command; imported lazily so `volcache fetch`
# never pays for torch or transformers.
_COMMANDS: dict[str, str] = {
    "fetch": "volcache.cli._store:fetch",
    "ls": "volcache.cli._store:ls",
    "hub": "volcache.cli._hub:hub",
    "serve": "volcache.cli._serve:serve",  # imports the worker only when run: see _serve
    "audit": "volcache.audit.cli:audit",
    "doctor": "volcache.cli._ops:doctor",
    "du": "volcache.cli._ops:du",
    "verify": "volcache.cli._ops:verify",
    "prune": "volcache.cli._ops:prune",
    "rm": "volcache.cli._ops:rm",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in _COMMANDS if self._available(name))

    @staticmethod
    def _available(name: str) -> bool:
        module = _COMMANDS[name].split(":")[0]
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # the parent package is not there either
            return False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None or not self._available(cmd_name):
            return None
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="volcache")
def cli() -> None:
    """volcache: Hugging Face weights stored once, on the network volume, loaded in place.

    \b
    Examples:
      volcache fetch sentence-transformers/all-MiniLM-L6-v2
      volcache ls
      volcache hub serve ./mirror --port 8088
      volcache serve --rp_serve_api
    """


def main(argv: list[str] | None = None) -> Any:
    """Entry point: run the CLI, turning volcache's errors into one line and exit 1."""
    from .._logging import errors_as_one_line

    with errors_as_one_line() as boundary:
        return cli.main(args=argv, prog_name="volcache", standalone_mode=True, obj=boundary)


def settings() -> Settings:
    """The settings of this command, read from the environment once, on first use.

    They tell the error boundary whether to show tracebacks (VOLCACHE_DEBUG=1).
    """
    from .._logging import ErrorBoundary
    from .._settings import Settings

    root = click.get_current_context().find_root()
    cached = root.meta.get("volcache.settings")
    if cached is None:
        cached = Settings.from_env()
        root.meta["volcache.settings"] = cached
        if isinstance(root.obj, ErrorBoundary):
            root.obj.debug = cached.debug
    assert isinstance(cached, Settings)
    return cached
