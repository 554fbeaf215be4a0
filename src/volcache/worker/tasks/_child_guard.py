"""Run a command so that it, and every process it starts, ends when the worker ends, however it ends.

    python _child_guard.py PARENT_PID -- COMMAND [ARGS...]

`vllm serve` starts engine processes of its own, and those outlive it when it is killed: the
kernel's parent-death signal reaches one process only, and a worker killed with SIGKILL runs
no clean-up. So the worker starts this guard instead, as the leader of a new process group,
with the parent-death signal set to SIGTERM; the guard starts the command in its group. When
the guard gets SIGTERM (the worker died, or stopped it), or the command exits, it signals the
whole group: SIGTERM, then SIGKILL after a grace period. It exits with the command's status.

Run by path, not as a module, so it imports nothing but the standard library (it starts in
milliseconds and never imports the volcache package or a model library).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType

_PR_SET_PDEATHSIG = 1
GRACE_S = 10.0


def end_group(child: subprocess.Popen[bytes], code: int) -> None:
    """SIGTERM to the group (this process ignores it), SIGKILL after the grace period; then exit."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while (child.poll() is None or _others_in_group()) and time.monotonic() < deadline:
        time.sleep(0.1)
    sys.stdout.flush()
    if _others_in_group():
        os.killpg(0, signal.SIGKILL)  # the stragglers, and this process with them
    os._exit(code)


def _others_in_group() -> bool:
    """Whether a live process other than this one is in this process group (from /proc)."""
    me, group = os.getpid(), os.getpgid(0)
    for stat in os.listdir("/proc"):
        if not stat.isdigit() or int(stat) == me:
            continue
        try:
            with open(f"/proc/{stat}/stat", encoding="utf-8", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            return True
    return False


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: _child_guard.py PARENT_PID -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    parent, command = int(argv[0]), argv[2:]
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    child = subprocess.Popen(command)

    def stop(signum: int, _frame: FrameType | None) -> None:
        end_group(child, 128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if os.getppid() != parent:  # the worker died before the death signal was armed
        end_group(child, 1)
    code = child.wait()
    end_group(child, code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
