"""Load a snapshot with its real loader while recording every file the process opens.

The proof behind "download exactly what the loader reads": Python's audit hook on `open` does
not see files native code opens (safetensors maps its files from Rust), so the opens are
recorded at the system level with `strace -f -e trace=openat`. `trace_load` runs one loader in
a child process and returns the real paths it opened, resolved through the snapshot's links.

Loaders (`LOADERS`): ``transformers`` (AutoModelForCausalLM + a 2-token generation),
``sentence-transformers`` (encode), ``diffusers`` (StableDiffusionPipeline, one step, with the
variant in ``VOLCACHE_TEST_VARIANT``) and ``gguf`` (the `gguf` package's reader, opening the
parts of a split file the way llama.cpp names them, from the first part's ``split.count``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["LOADERS", "LoadJob", "LoadTrace", "strace_available", "trace_load", "trace_loads"]

_TRANSFORMERS = """
import sys
from transformers import AutoModelForCausalLM, AutoTokenizer
path = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(path)
tokenizer = AutoTokenizer.from_pretrained(path)
out = model.generate(**tokenizer("hello world", return_tensors="pt"), max_new_tokens=2, do_sample=False)
print("loaded", tuple(out.shape))
"""
_SENTENCE_TRANSFORMERS = """
import sys
from sentence_transformers import SentenceTransformer
emb = SentenceTransformer(sys.argv[1], device="cpu").encode(["hello world"])
print("loaded", emb.shape)
"""
_DIFFUSERS = """
import os, sys, torch
from diffusers import StableDiffusionPipeline
variant = os.environ.get("VOLCACHE_TEST_VARIANT") or None
dtype = torch.float16 if variant == "fp16" else torch.float32
pipe = StableDiffusionPipeline.from_pretrained(sys.argv[1], variant=variant, torch_dtype=dtype)
assert pipe.unet.dtype == dtype, pipe.unet.dtype
pipe.to(torch.float32)  # one CPU step in fp32: the load is what is proven, in the variant's dtype
image = pipe("a cat", num_inference_steps=1, height=16, width=16, output_type="np").images[0]
print("loaded", image.shape)
"""
_GGUF = """
import re, sys
from pathlib import Path
from gguf import GGUFReader
snapshot = Path(sys.argv[1])
first = sorted(p for p in snapshot.rglob("*.gguf") if not re.search(r"-000(0[2-9]|[1-9][0-9])-of-", p.name))[0]
reader = GGUFReader(first)
field = reader.fields.get("split.count")
count = int(field.parts[field.data[0]][0]) if field else 1
names = [first.name.replace("-00001-of-", f"-{i:05d}-of-") for i in range(1, count + 1)]
parts = [first.with_name(name) for name in names]
tensors = 0
for part in parts:
    for tensor in GGUFReader(part).tensors:
        tensors += 1
        float(tensor.data.sum())  # read every tensor's bytes
print("loaded", len(parts), "parts", tensors, "tensors")
"""
LOADERS: Mapping[str, str] = {
    "transformers": _TRANSFORMERS,
    "sentence-transformers": _SENTENCE_TRANSFORMERS,
    "diffusers": _DIFFUSERS,
    "gguf": _GGUF,
}
# Runs several loads in one process (one import of torch): argv[1] is a JSON list of jobs.
_DRIVER = """
import json, os, sys
scripts = json.loads(sys.argv[1])
for loader, snapshot, variant in json.loads(sys.argv[2]):
    os.environ["VOLCACHE_TEST_VARIANT"] = variant
    sys.argv = ["-c", snapshot]
    exec(compile(scripts[loader], loader, "exec"), {"__name__": "__main__"})
"""
_OPENAT = re.compile(r'^(\d+)\s+openat\([^,]+, "((?:[^"\\]|\\.)*)"(.*)$')
_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. openat resumed>.*\)\s*=\s*(-?\d+)")
_RESULT = re.compile(r"\)\s*=\s*(-?\d+)")


@dataclasses.dataclass(frozen=True)
class LoadTrace:
    """What one load opened (real paths, successful opens only) and what it printed."""

    opened: frozenset[Path]
    stdout: str


def strace_available() -> bool:
    """True where `strace` exists and may trace a child (a container may forbid ptrace)."""
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


@dataclasses.dataclass(frozen=True)
class LoadJob:
    """One load: which loader, which snapshot folder, which variant (diffusers)."""

    loader: str
    snapshot: Path
    variant: str = ""


def trace_load(loader: str, snapshot: Path, env: Mapping[str, str], *, timeout: float = 600) -> LoadTrace:
    """Run `LOADERS[loader]` on `snapshot` under strace; raise with the output if the load failed."""
    return trace_loads([LoadJob(loader, snapshot, env.get("VOLCACHE_TEST_VARIANT", ""))], env, timeout=timeout)


def trace_loads(jobs: list[LoadJob], env: Mapping[str, str], *, timeout: float = 900) -> LoadTrace:
    """Run the loads one after another in one traced process (torch is imported once); the opens
    of different snapshots are told apart by their real paths (each snapshot's own blobs)."""
    import json

    with tempfile.TemporaryDirectory(prefix="volcache-strace-") as tmp:
        log = Path(tmp) / "openat.log"
        cmd = ["strace", "-f", "-qq", "-e", "trace=openat", "-e", "signal=none", "-s", "4096", "-o", str(log)]
        listed = json.dumps([[j.loader, str(j.snapshot), j.variant] for j in jobs])
        cmd += [sys.executable, "-c", _DRIVER, json.dumps(dict(LOADERS)), listed]
        proc = subprocess.run(cmd, env=dict(env), capture_output=True, text=True, timeout=timeout, cwd=tmp)
        if proc.returncode != 0:
            raise AssertionError(f"loading {listed} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        opened = _successful_opens(log.read_text().splitlines(), Path(tmp))
    return LoadTrace(frozenset(opened), proc.stdout)


def _successful_opens(lines: list[str], cwd: Path) -> set[Path]:
    """Paths of `openat` calls that returned a descriptor, including calls strace split in two
    (`<unfinished ...>`, then `<... openat resumed>`) when threads interleave."""
    pending: dict[str, str] = {}
    opened: set[Path] = set()
    for line in lines:
        call, resumed = _OPENAT.match(line), _RESUMED.match(line)
        if call is not None:
            pid, path, rest = call.groups()
            result = _RESULT.search(rest)
            if "<unfinished" in rest:
                pending[pid] = path
            elif result is not None and int(result.group(1)) >= 0:
                opened.add(Path(os.path.realpath(cwd / path)))
        elif resumed is not None and resumed.group(1) in pending:
            path = pending.pop(resumed.group(1))
            if int(resumed.group(2)) >= 0:
                opened.add(Path(os.path.realpath(cwd / path)))
    return opened
