"""Process groups: kill one, list its members, measure its memory.

Every browser runs in a process group of its own (chromedriver starts Chromium in a new
session, so one ``killpg`` reaches the browser and its helpers); the pool kills a worker's
group with the worker, the worker kills its browser's group when its parent dies, and the
start-up sweep kills groups that a killed daemon left. All of them use :func:`kill_group`.
A group that is gone, or not ours to signal, is no error: the caller wanted it gone.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import psutil

log = logging.getLogger("coupad.processes")

KILL_WAIT = 5.0  # how long kill_group waits, after SIGKILL, for the members to be gone


def kill_group(pgid: int, grace: float | None = None) -> None:
    """End process group ``pgid``: SIGKILL at once, or with ``grace`` seconds, SIGTERM first,
    then SIGKILL what is left after them. With a grace it waits until the members are gone
    (at most ``grace`` + :data:`KILL_WAIT`), reaping the leader if it is our child."""
    signals = [signal.SIGKILL] if grace is None else [signal.SIGTERM, signal.SIGKILL]
    for sig in signals:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            log.warning("not allowed to signal process group %s", pgid)
            return
        if grace is None:
            return
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else KILL_WAIT)
        while time.monotonic() < deadline:
            _reap(pgid)
            if not group_members(pgid):
                return
            time.sleep(0.05)


def group_members(pgid: int) -> list[psutil.Process]:
    """The live (not zombie) processes of group ``pgid``."""
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return members


def group_pss_mb(pgid: int) -> float:
    """Proportional set size of a process group in MB (summed RSS would count shared pages
    once per process, overstating a browser about six times)."""
    total = 0
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) != pgid:
                continue
            info = proc.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return total / (1024 * 1024)


def _reap(pid: int) -> None:
    """Collect the exit status of the group leader if it is our own child (no zombie left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
