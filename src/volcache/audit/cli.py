"""`volcache audit`: the command line of the linter."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import click

from ._config import ConfigProblem, FileConfig, load_config
from ._engine import AuditOptions, AuditReport, audit_paths, unknown_selectors
from ._locations import DEFAULT_MOUNT_POINTS
from ._report import render_json, render_sarif, render_text
from .rules import ALL_RULES


class _ConfigError(click.ClickException):
    exit_code = 2


def _codes(values: Sequence[str], option: str) -> tuple[str, ...]:
    codes = tuple(c.strip().upper() for v in values for c in v.split(",") if c.strip())
    unknown = unknown_selectors(codes)
    if unknown:
        known = ", ".join(r.code for r in ALL_RULES)
        raise click.BadParameter(f"unknown code(s) {', '.join(unknown)}; known: {known}", param_hint=option)
    return codes


def _config_for(paths: Sequence[Path], isolated: bool) -> FileConfig:
    if isolated:
        return FileConfig()
    start = Path(os.path.commonpath([str(p.resolve()) for p in paths]))
    try:
        config = load_config(start)
    except ConfigProblem as exc:
        raise _ConfigError(str(exc)) from exc
    if config.note:
        click.echo(f"volcache audit: {config.note}", err=True)
    for key, values in (("select", config.select or ()), ("ignore", config.ignore)):
        unknown = unknown_selectors(values)
        if unknown:
            raise _ConfigError(f"{config.source}: [tool.volcache.audit] {key} has unknown code(s) {', '.join(unknown)}")
    return config


def _summary(report: AuditReport) -> str:
    files = f"{report.files_checked} file{'s' if report.files_checked != 1 else ''}"
    if not report.findings:
        return f"volcache audit: no findings in {files}."
    errors = sum(f.severity == "error" for f in report.findings)
    warnings = len(report.findings) - errors
    return f"volcache audit: {len(report.findings)} finding(s) ({errors} error, {warnings} warning) in {files}."


@click.command("audit")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "sarif"]),
    default="text",
    show_default=True,
    help="text for people, json for scripts, sarif for GitHub code scanning.",
)
@click.option(
    "--select", multiple=True, metavar="CODES", help="Only these codes or prefixes (VC101,VC2); replaces the config's."
)
@click.option("--ignore", multiple=True, metavar="CODES", help="Skip these codes or prefixes; added to the config's.")
@click.option("--isolated", is_flag=True, help="Ignore [tool.volcache.audit] in pyproject.toml.")
@click.option("--explain", metavar="CODE", help="Print one rule's documentation and exit.")
def audit(
    paths: tuple[Path, ...],
    output_format: str,
    select: tuple[str, ...],
    ignore: tuple[str, ...],
    isolated: bool,
    explain: str | None,
) -> None:
    """Find code and Dockerfile lines that put model weights on disk twice or on the wrong disk.

    Reads Python files, Dockerfiles and shell scripts under PATHS (default: the current
    folder), and the build-context scripts a Dockerfile runs, without importing or
    running them. Exit status: 0 no findings, 1 findings, 2 usage error.

    \b
    Examples:
      volcache audit
      volcache audit src Dockerfile.runpod --ignore VC105,VC205
      volcache audit --format sarif . > volcache-audit.sarif
      volcache audit --explain VC101
    """
    if explain:
        rule = next((r for r in ALL_RULES if r.code == explain.strip().upper()), None)
        if rule is None:
            raise click.BadParameter(f"no rule {explain}", param_hint="--explain")
        click.echo(f"{rule.code} ({rule.name}, {rule.severity})\n\n{rule.doc()}")
        return
    targets = paths or (Path("."),)
    cli_select, cli_ignore = _codes(select, "--select"), _codes(ignore, "--ignore")
    config = _config_for(targets, isolated)
    options = AuditOptions(
        select=cli_select or config.select or (),
        ignore=(*config.ignore, *cli_ignore),
        exclude=config.exclude,
        root=config.source.parent if config.source else None,
        mount_points=config.mount_points or DEFAULT_MOUNT_POINTS,
    )
    report = audit_paths(targets, options)
    for skipped in report.skipped:
        click.echo(f"volcache audit: skipped {skipped} (not a Python file, a Dockerfile or a shell script)", err=True)
    if output_format == "json":
        click.echo(render_json(report.findings), nl=False)
    elif output_format == "sarif":
        click.echo(render_sarif(report.findings, report.rules), nl=False)
    else:
        click.echo(render_text(report.findings), nl=False)
    click.echo(_summary(report), err=True)
    if report.findings:
        raise click.exceptions.Exit(1)
