"""What every benchmark section shares: child processes and their timing, page-cache eviction,
weight accounting, statistics, markdown tables and plots.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import selectors
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .baselines import WORKDIR_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SENTENCES = ["A cat is sleeping on the sofa.", "A kitten naps on the couch.", "The stock market fell sharply today."]
RESULT_MARKER = "bench: result "  # the baselines and probes print it with their first result
# Variables a child must not inherit: they would pin caches or change what a library does.
_DROPPED_PREFIXES = ("HF_", "HUGGING_FACE_", "VOLCACHE_", "MODEL_", "TRANSFORMERS_", "TORCH_HOME", "RUNPOD_")


@dataclasses.dataclass
class Options:
    """What the command line asked for."""

    quick: bool = False
    repeats: int = 3
    out: Path = RESULTS
    keep: bool = False  # keep the temporary folders (for debugging)
    hub_bandwidth: float = 100e6  # bytes/s per download stream from the Hub emulator
    hub_link: float = 400e6  # bytes/s for all the emulator's streams together (the first-download table)

    def workdir(self, name: str) -> contextlib.AbstractContextManager[str]:
        if self.keep:
            return contextlib.nullcontext(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{name}-"))
        return tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{name}-")


@dataclasses.dataclass
class Section:
    """One section's results: markdown for the terminal and bench/results, JSON data, plots."""

    name: str
    markdown: str
    data: dict[str, Any]
    plots: list[Path] = dataclasses.field(default_factory=list)

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{self.name}.md").write_text(self.markdown.rstrip() + "\n", encoding="utf-8")
        (out / f"{self.name}.json").write_text(json.dumps(self.data, indent=2, default=str) + "\n", encoding="utf-8")


# -- statistics and tables ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Summary:
    """Median, min and max of repeated measurements."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        return cls(tuple(values))

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")

    def seconds(self) -> str:
        """`1.23 s (1.10–1.40)`: the median, then min–max when there is more than one run."""
        if not self.values:
            return "–"
        if len(self.values) == 1:
            return f"{self.median:.2f} s"
        return f"{self.median:.2f} s ({self.low:.2f}–{self.high:.2f})"

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "runs": list(self.values)}


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b > 0 and a == a else "–"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


# -- child processes --------------------------------------------------------------------------------
def child_env(**extra: str) -> dict[str, str]:
    """This environment without Hugging Face, volcache or RunPod settings, with `bench` importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


@dataclasses.dataclass
class Run:
    """One child process: when it printed its first result, how it ended, what it said."""

    command: list[str]
    seconds_to_result: float | None
    seconds_total: float
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.seconds_to_result is not None

    def json_after(self, marker: str) -> dict[str, Any]:
        """The JSON object on the first line that contains `marker`."""
        for line in self.output.splitlines():
            if marker in line:
                data = json.loads(line[line.index(marker) + len(marker) :])
                assert isinstance(data, dict)
                return data
        raise LookupError(f"no {marker!r} line in the output of {' '.join(self.command)}")

    def check(self) -> Run:
        if not self.ok:
            tail = "\n".join(self.output.splitlines()[-30:])
            raise RuntimeError(f"{' '.join(self.command[:4])} ... failed (exit {self.returncode}):\n{tail}")
        return self


def run_timed(
    command: Sequence[str], env: Mapping[str, str], marker: str, timeout: float = 600, cwd: Path | None = None
) -> Run:
    """Start `command` and time it from just before the fork until it prints a line containing `marker`."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(command),
        env=dict(env),
        cwd=cwd or REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    found: float | None = None
    output = bytearray()
    needle = marker.encode()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = start + timeout
    try:
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                proc.kill()
                break
            if not sel.select(min(left, 1.0)):
                continue
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            scan_from = max(0, len(output) - len(needle))
            output += data
            if found is None and output.find(needle, scan_from) >= 0:
                found = time.perf_counter() - start
        proc.wait(timeout=max(1.0, deadline - time.perf_counter()))
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    total = time.perf_counter() - start
    return Run(list(command), found, total, proc.returncode, output.decode("utf-8", "replace"))


def start_all(
    commands: Sequence[Sequence[str]], envs: Sequence[Mapping[str, str]]
) -> tuple[float, list[int], list[str]]:
    """Start every command at once, each with its environment; wait for all.

    Returns the wall time, the exit codes and the outputs (stdout and stderr together).
    """
    with contextlib.ExitStack() as stack:
        outs = [stack.enter_context(tempfile.TemporaryFile()) for _ in commands]
        start = time.perf_counter()
        procs = [
            subprocess.Popen(list(c), env=dict(e), cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
            for c, e, out in zip(commands, envs, outs, strict=True)
        ]
        codes = [p.wait(timeout=900) for p in procs]
        wall = time.perf_counter() - start
        texts = []
        for out in outs:
            out.seek(0)
            texts.append(out.read().decode("utf-8", "replace"))
    return wall, codes, texts


def check_all(result: tuple[float, list[int], list[str]]) -> float:
    """The wall time of a `start_all`, or RuntimeError with the output of the first that failed."""
    wall, codes, outputs = result
    for code, output in zip(codes, outputs, strict=True):
        if code != 0:
            raise RuntimeError(f"a child exited {code}:\n" + "\n".join(output.splitlines()[-30:]))
    return wall


# -- the page cache ---------------------------------------------------------------------------------
def regular_files(*roots: Path) -> Iterator[Path]:
    """Regular files under `roots`, never following a symlink, each path once."""
    for root in roots:
        if root.is_file() and not root.is_symlink():
            yield root
            continue
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath, name)
                with contextlib.suppress(OSError):
                    if stat.S_ISREG(path.lstat().st_mode):
                        yield path


def evict(paths: Iterable[Path]) -> int:
    """Drop the cached pages of `paths` with posix_fadvise(DONTNEED); returns the bytes asked for.

    Only clean pages can be dropped, so files are flushed first (fdatasync on a file this
    process may not have written is harmless).
    """
    total = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            with contextlib.suppress(OSError):
                os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total


# -- weight accounting ------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class WeightCount:
    """Bytes of a model's weight content found under some roots: each inode once, symlinks never followed."""

    bytes: int
    files: int


def count_weights(weights: Mapping[str, int], *roots: Path) -> WeightCount:
    """Bytes of regular files under `roots` whose content is one of `weights` (sha256 → size).

    Content is what counts, not names: a blob, a copied snapshot file and a copy in another
    folder are all found, and a hard link (same inode) counts once.
    """
    sizes = set(weights.values())
    seen: set[tuple[int, int]] = set()
    total = files = 0
    for path in regular_files(*roots):
        st = path.lstat()
        if st.st_size not in sizes or (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        if sha256(path) in weights:
            total += st.st_size
            files += 1
    return WeightCount(total, files)


def model_weights(folder: Path, suffixes: tuple[str, ...] = (".safetensors", ".bin")) -> dict[str, int]:
    """sha256 → size of the weight files a load reads from `folder`."""
    return {sha256(p): p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name.endswith(suffixes)}


def write_hub_snapshot(cache: Path, repo: str, files: Mapping[str, Path], commit: str = "0" * 40) -> Path:
    """Lay files out as the Hugging Face cache does (blobs + snapshot links); returns the snapshot.

    The blobs are hard links to `files` when they share a filesystem, so nothing is copied.
    """
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    for name, source in files.items():
        blob = repo_dir / "blobs" / sha256(source)
        if not blob.exists():
            try:
                os.link(source, blob)
            except OSError:
                shutil.copyfile(source, blob)  # volcache: ignore[VC101] bench fixture across filesystems
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


# -- plots ------------------------------------------------------------------------------------------
def bar_plot(
    path: Path,
    title: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[Summary | None]],
    ylabel: str = "seconds (median, bars: min–max)",
    hline: tuple[float, str] | None = None,
) -> Path | None:
    """Grouped bars with min–max whiskers; None (no file) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.25 * len(groups) * (1 + 0.4 * (len(series) - 1))), 4.2))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        med = [v.median if v else 0.0 for v in values]
        err = [[(v.median - v.low) if v else 0.0 for v in values], [(v.high - v.median) if v else 0.0 for v in values]]
        ax.bar(xs, med, width, yerr=err, capsize=3, label=name)
    if hline is not None:
        ax.axhline(hline[0], color="black", linestyle="--", linewidth=1)
        ax.annotate(hline[1], (len(groups) - 0.5, hline[0]), ha="right", va="bottom", fontsize=8)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def python() -> str:
    return sys.executable
