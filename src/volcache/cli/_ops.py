"""`volcache doctor`, `du`, `verify`, `prune` and `rm`: inspect and keep a volume healthy."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .._errors import ConfigError
from .._logging import setup_logging
from .._settings import Settings, format_bytes, parse_duration, parse_size
from . import settings as current_settings

if TYPE_CHECKING:
    from ..ops.compile_cache import CompileEntry
    from ..ops.prune import PrunePlan, PruneResult
    from ..ops.verify import FileProblem, VerifyReport
    from ..store import CompletionRecord, RemoteFile

_ROOT_HELP = "A folder of the container disk to search (repeatable; replaces the defaults)."
DU_TOP_GROUPS = 5
DU_CONTAINER_ROOTS = (Path("/tmp"), Path("/root/.cache"), Path("/app"), Path("/opt"), Path("~"))


def _fail(message: str, code: int = 1) -> NoReturn:
    """One readable line on stderr, then exit (1: the check failed; 2: a usage error)."""
    click.echo(f"volcache: error: {message}", err=True)
    click.get_current_context().exit(code)
    raise AssertionError("unreachable")


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


# -- doctor ---------------------------------------------------------------------------------------
def _probe_names() -> list[str]:
    from ..ops.doctor import PROBES

    return list(PROBES)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--container-root", "container_roots", multiple=True, type=click.Path(path_type=Path), help=_ROOT_HELP)
@click.option("--skip", multiple=True, type=click.Choice(_probe_names()), help="A probe not to run (repeatable).")
def doctor(as_json: bool, container_roots: tuple[Path, ...], skip: tuple[str, ...]) -> None:
    """Check a deployment: the volume, symlinks, flock, space, cache paths, stray weights, GPU.

    \b
    Each probe prints ok, WARN or FAIL with a fix; exit status 1 when any probe fails.
    Container-disk roots searched by default: /tmp, ~/.cache, /app, /root, /workspace
    (minus the volume), bounded in depth and time.
    \b
    Examples:
      volcache doctor
      volcache doctor --json --skip gpu
      volcache doctor --container-root /app --container-root /tmp
    """
    from ..ops.doctor import CONTAINER_ROOTS, DoctorContext, run_doctor

    settings = current_settings()
    probes = run_doctor(DoctorContext(settings, container_roots or CONTAINER_ROOTS), skip)
    failed = [p for p in probes if p.status == "fail"]
    if as_json:
        click.echo(json.dumps({"ok": not failed, "probes": [dataclasses.asdict(p) for p in probes]}, indent=1))
    else:
        for p in probes:
            label = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}[p.status]
            click.echo(f"{label:<5} {p.name:<18} {p.detail}")
            if p.fix and p.status != "ok":
                click.echo(f"{'':<24} fix: {p.fix}")
        warned = sum(p.status == "warn" for p in probes)
        click.echo(f"doctor: {len(failed)} failed, {warned} warnings, {len(probes) - len(failed) - warned} ok")
    if failed:
        click.get_current_context().exit(1)


# -- du -------------------------------------------------------------------------------------------
@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--container-root", "container_roots", multiple=True, type=click.Path(path_type=Path), help=_ROOT_HELP)
@click.option("--all", "show_all", is_flag=True, help=f"List every duplicate group (default: {DU_TOP_GROUPS}).")
def du(paths: tuple[Path, ...], as_json: bool, container_roots: tuple[Path, ...], show_all: bool) -> None:
    """Weight bytes per location (volume, container disk, PATHS) and the duplication ratio.

    \b
    Files are counted by identity (hard links once) and compared by content (size, then
    sha256); symlinks are never followed. Ratio = physical ÷ unique bytes: 1.00 when every
    weight exists once. Container-disk roots by default: /tmp, /root/.cache, /app, /opt, $HOME.
    Package data (site-packages, dist-packages, conda pkgs) and small files count only inside a
    model folder. The summary names the largest duplicate groups; --all lists every one.
    \b
    Examples:
      volcache du
      volcache du /tmp/models --json
    """
    from ..ops.compile_cache import scan_compile_cache
    from ..ops.du import default_locations, measure

    settings = current_settings()
    roots = tuple(r.expanduser() for r in (container_roots or DU_CONTAINER_ROOTS))
    report = measure(default_locations(settings.volume, settings.hub_cache, roots, paths))
    compiled = scan_compile_cache(settings.compile_cache)
    compile_bytes = sum(e.bytes for e in compiled)
    if as_json:
        data = report.to_json()
        data["compile_cache"] = {"root": str(settings.compile_cache), "entries": len(compiled), "bytes": compile_bytes}
        click.echo(json.dumps(data, indent=1))
        return
    click.echo(f"{'LOCATION':<20} {'FILES':>6} {'PHYSICAL':>10}  ROOTS")
    for loc in report.locations:
        roots_text = ", ".join(str(r) for r in loc.roots)
        click.echo(f"{loc.name:<20} {loc.files:>6} {format_bytes(loc.physical_bytes):>10}  {roots_text}")
        for note in loc.notes:
            click.echo(f"{'':<20} note: {note}")
    wasted = report.physical_bytes - report.unique_bytes
    if compiled:  # compiled graphs and kernels, not weights: outside the ratio
        click.echo(
            f"{'compile cache':<20} {len(compiled):>6} {format_bytes(compile_bytes):>10}  {settings.compile_cache}"
        )
    verdict = "every weight exists once" if not wasted else f"{format_bytes(wasted)} are duplicates"
    click.echo(
        f"total: {format_bytes(report.physical_bytes)} physical, {format_bytes(report.unique_bytes)} unique, "
        f"ratio {report.ratio:.2f} ({verdict})"
    )
    shown = report.duplicates if show_all else report.duplicates[:DU_TOP_GROUPS]
    for group in shown:
        click.echo(f"duplicate {format_bytes(group.size)} ×{len(group.paths)} (sha256 {group.sha256[:12]}…):")
        for path in group.paths:
            click.echo(f"  {path}")
    hidden = report.duplicates[len(shown) :]
    if hidden:
        wasted_hidden = format_bytes(sum(g.wasted_bytes for g in hidden))
        click.echo(f"... and {len(hidden)} smaller duplicate groups ({wasted_hidden}); `volcache du --all` lists them.")


# -- verify ---------------------------------------------------------------------------------------
@click.command()
@click.argument("models", nargs=-1)
@click.option("--revision", "-r", default=None, help="Only this branch, tag or commit (default: every snapshot).")
@click.option("--repair", is_flag=True, help="Download broken files again, under the model's lease.")
def verify(models: tuple[str, ...], revision: str | None, repair: bool) -> None:
    """Re-hash snapshots against their completion records; exit 1 naming each mismatch.

    \b
    Sizes for every file, sha256 for LFS files, the git blob id for the others. MODEL
    defaults to every model with a record on the volume. --repair re-downloads only the
    broken files and leaves the rest, and the record, as they are.
    \b
    Examples:
      volcache verify
      volcache verify org/name --repair
    """
    from ..ops.verify import records_to_verify

    settings = current_settings()
    setup_logging(settings.log_level)
    records = records_to_verify(settings, models, revision)
    if not records:
        click.echo(f"no completion records in {settings.records_dir}; nothing to verify.")
        return
    report = _verify_with_progress(settings, records)
    for p in report.problems:
        click.echo(f"volcache: mismatch: {p.describe()}", err=True)
    summary = f"{report.files} files ({format_bytes(report.bytes)}, {_n(len(report.records), 'snapshot')})"
    if not report.problems:
        click.echo(f"verified {summary}: all match.")
        return
    if not repair:
        first = report.problems[0]
        _fail(
            f"{first.file.path} of {first.model}@{first.commit[:8]} does not match its record "
            f"({len(report.problems)} of {summary} differ). Fix: `volcache verify {first.model} --repair`."
        )
    _repair(settings, report.problems)


def _verify_with_progress(settings: Settings, records: Sequence[CompletionRecord]) -> VerifyReport:
    from ..ops.verify import verify as verify_records

    if _stderr_is_terminal():
        from tqdm import tqdm

        total = sum(r.total_bytes for r in records)
        with tqdm(total=total, unit="B", unit_scale=True, desc="verify", file=sys.stderr) as bar:
            return verify_records(settings, records, progress=bar.update)
    return verify_records(settings, records, on_file=_log_file)


def _log_file(record: CompletionRecord, f: RemoteFile, problem: str | None) -> None:
    import logging

    log = logging.getLogger("volcache.verify")
    what = f"{record.repo}@{record.commit[:8]} {f.path} ({format_bytes(f.size)})"
    if problem is None:
        log.info("volcache: verified %s", what)
    else:
        log.warning("volcache: MISMATCH %s: %s", what, problem)


def _repair(settings: Settings, problems: Sequence[FileProblem]) -> None:
    from ..ops.verify import repair
    from ..store import ModelStore, pin
    from ..store.integrity import check_file

    pin(settings)
    result = repair(settings, problems)
    store = ModelStore(settings)
    still = [p for p in result.repaired if check_file(store.snapshot_dir(p.model, p.commit) / p.file.path, p.file)]
    for p in still:
        click.echo(f"volcache: still broken after the download: {p.describe()}", err=True)
    for p, why in result.failed:
        click.echo(f"volcache: not repaired: {p.describe()}: {why}", err=True)
    if result.failed or still:
        _fail(f"{len(result.failed) + len(still)} files could not be repaired; see above.")
    click.echo(f"repaired {_n(len(result.repaired), 'file')}; the snapshots match their records again.")


# -- prune and rm ---------------------------------------------------------------------------------
def _parse(value: str | None, parse: Callable[..., Any], param: str) -> Any:
    if value is None:
        return None
    try:
        return parse(value, name=param)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None


@click.command()
@click.option("--keep-bytes", metavar="SIZE", help="Evict LRU snapshots until the cache holds <= SIZE (e.g. 50GB).")
@click.option("--older-than", metavar="DURATION", help="Evict snapshots unused for longer than DURATION (e.g. 7d).")
@click.option("--dry-run", is_flag=True, help="Print the plan; remove nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def prune(keep_bytes: str | None, older_than: str | None, dry_run: bool, yes: bool) -> None:
    """Evict whole snapshots, least recently used first, never one a worker needs.

    \b
    Never removed: a model whose download lease is live, a snapshot a live worker has
    loaded, a download in progress (.incomplete files), RunPod's read-only cache. The plan
    is printed first; refs go before snapshots, snapshots before blobs.
    \b
    Examples:
      volcache prune --keep-bytes 50GB --dry-run
      volcache prune --older-than 14d --yes
    """
    from ..ops.prune import plan_prune

    if keep_bytes is None and older_than is None:
        raise click.UsageError("give --keep-bytes SIZE or --older-than DURATION (or both).")
    keep = _parse(keep_bytes, parse_size, "--keep-bytes")
    age = _parse(older_than, parse_duration, "--older-than")
    settings = current_settings()
    setup_logging(settings.log_level)
    plan = plan_prune(settings, keep_bytes=keep, older_than=age)
    _print_plan(plan, "prune")
    stale = _print_compile_plan(settings, age)
    if stale and not plan.models and not dry_run and (yes or _ask(f"Remove {_n(len(stale), 'compile cache folder')}?")):
        _prune_compile(settings, stale)
        return
    if _confirmed(plan, dry_run, yes, "prune"):
        _report(_execute(settings, plan))
        if stale:
            _prune_compile(settings, stale)


def _print_compile_plan(settings: Settings, older_than: float | None) -> list[CompileEntry]:
    """Compile cache entries unused for `older_than` (and abandoned publishes), printed; [] without an age."""
    from ..ops.compile_cache import plan_compile_prune, scan_compile_cache

    if older_than is None:
        return []
    stale = plan_compile_prune(scan_compile_cache(settings.compile_cache), older_than)
    for entry in stale:
        click.echo(f"  compile cache {entry.path.name}: {format_bytes(entry.bytes)}, unused")
    return stale


def _prune_compile(settings: Settings, stale: list[CompileEntry]) -> None:
    from ..ops.compile_cache import remove_entries

    freed = remove_entries(settings.compile_cache, stale)
    click.echo(f"removed {_n(len(stale), 'compile cache folder')}, freed {format_bytes(freed)}.")


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        _fail("prune removes files; run it again with --yes (stdin is not a terminal to confirm on).", code=2)
    return click.confirm(question, default=False)


@click.command()
@click.argument("model")
@click.option("--revision", "-r", default=None, help="Only the snapshot of this branch, tag or commit.")
@click.option("--dry-run", is_flag=True, help="Print the plan; remove nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def rm(model: str, revision: str | None, dry_run: bool, yes: bool) -> None:
    """Remove MODEL's snapshots from the volume, with prune's safety; exit 1 if any is kept.

    \b
    Examples:
      volcache rm org/name --dry-run
      volcache rm org/name -r main --yes
    """
    from ..ops.prune import plan_remove

    settings = current_settings()
    setup_logging(settings.log_level)
    plan = plan_remove(settings, model, revision)
    _print_plan(plan, "rm")
    if _confirmed(plan, dry_run, yes, "rm"):
        result = _execute(settings, plan)
        _report(result)
        kept = [*plan.kept, *result.skipped]
    else:
        kept = [] if dry_run else list(plan.kept)
    if kept:
        _fail(f"{kept[0].model}@{kept[0].commit[:8]} {kept[0].reason}; not removed.")


def _execute(settings: Settings, plan: PrunePlan) -> PruneResult:
    from ..ops.prune import execute

    return execute(settings, plan)


def _confirmed(plan: PrunePlan, dry_run: bool, yes: bool, command: str) -> bool:
    if dry_run:
        click.echo("dry run: nothing was removed.")
        return False
    if not plan.models:
        click.echo("nothing to remove.")
        return False
    if yes:
        return True
    if not sys.stdin.isatty():
        _fail(f"{command} removes files; run it again with --yes (stdin is not a terminal to confirm on).", code=2)
    n = len(plan.evictions)
    if click.confirm(f"Remove {_n(n, 'snapshot')} and free {format_bytes(plan.expected_freed)}?", default=False):
        return True
    click.echo("cancelled: nothing was removed.")
    return False


def _print_plan(plan: PrunePlan, command: str) -> None:
    n = len(plan.evictions)
    click.echo(
        f"{command} plan: remove {_n(n, 'snapshot')} of {_n(len(plan.models), 'model')}, free "
        f"{format_bytes(plan.expected_freed)} (the cache holds {format_bytes(plan.cache_bytes)})"
    )
    now = time.time()
    for mp in plan.models:
        for e in mp.evictions:
            s = e.snapshot
            refs = ",".join(s.refs) or "-"
            click.echo(
                f"  {s.model}@{s.commit[:8]}  {refs:<10} last used {_ago(now - s.last_used):>8}  "
                f"{format_bytes(e.freed_bytes):>10}"
            )
        click.echo(
            f"    then {_n(len(mp.refs), 'ref')}, {_n(len(mp.evictions), 'snapshot folder')}, its records, "
            f"{_n(len(mp.blobs), 'blob')}"
            + (f", {_n(len(mp.orphans), 'blob')} no snapshot points at" if mp.orphans else "")
        )
    for k in plan.kept:
        click.echo(f"  kept {k.model}@{k.commit[:8]}: {k.reason}")


def _report(result: PruneResult) -> None:
    click.echo(f"removed {_n(len(result.removed), 'snapshot')}, freed {format_bytes(result.freed_bytes)}.")
    for k in result.skipped:
        click.echo(f"  skipped {k.model}@{k.commit[:8]}: {k.reason}", err=True)


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")
