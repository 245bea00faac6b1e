"""Run one command as a child subreaper, so that every process below it is counted and reaped.

Usage: ``python bench/reaper.py RESULT.json -- COMMAND...``

Chromium processes orphaned when chromedriver or a worker exits are re-parented to this
process rather than to init, so their CPU time reaches this process's ``RUSAGE_CHILDREN``
when they are reaped, and a benchmark can read the whole tree's CPU from this one process
(its own times plus its ``children_*`` times, plus those of its live descendants). SIGTERM
and SIGINT are passed on to the command. When the command has exited, the remaining
descendants get ``GRACE`` seconds to exit; whatever is still alive then is killed and named
in the result as a leftover. The result file holds the command's exit status, the CPU
seconds of everything reaped and the leftovers.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

PR_SET_CHILD_SUBREAPER = 36
GRACE = 30.0


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    result_path = Path(argv[0])
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    child = subprocess.Popen(argv[2:])

    def forward(signo: int, _frame: Any) -> None:
        try:
            os.kill(child.pid, signo)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = _reap_until(child.pid)
    leftovers = _reap_rest(time.monotonic() + GRACE)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "returncode": status,
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "leftovers": leftovers,
    }
    temporary = result_path.with_suffix(".tmp")
    temporary.write_text(json.dumps(result), encoding="utf-8")
    os.replace(temporary, result_path)
    return 0


def _reap_until(pid: int) -> int:
    """Reap children (orphans included) until ``pid`` has exited; return its exit status."""
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return -1
        except InterruptedError:
            continue
        if reaped == pid:
            return os.waitstatus_to_exitcode(status)


def _reap_rest(deadline: float) -> list[str]:
    """Reap the remaining descendants; kill those still alive at ``deadline``."""
    leftovers: list[str] = []
    while True:
        try:
            reaped, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return leftovers
        if reaped:
            continue
        if time.monotonic() > deadline:
            for proc in psutil.Process().children(recursive=True):
                try:
                    leftovers.append(" ".join(proc.cmdline())[:200])
                    proc.kill()
                except psutil.Error:
                    continue
            deadline = time.monotonic() + GRACE
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
