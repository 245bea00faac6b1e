"""The operating system as the pool and the daemon use it: start a worker process, kill a
worker or its browser, read a browser's memory and the machine's.

:class:`System` is the real thing. The daemon's policies (restart backoff and FATAL, memory
hysteresis, recycling, lease expiry, the throttle, the order of a pass) are decided above
this seam, so tests give the pool and the daemon a stand-in (``tests/fakehost.py``) and drive
``Daemon.step(now)`` with a stepped clock, in milliseconds — beside the tests that run the
real daemon, real workers and real browsers, which stay.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any, Protocol

from coupad import memory
from coupad.browser.launch import kill_browser
from coupad.memory import MemoryView
from coupad.processes import group_pss_mb, kill_group

_SPAWN = multiprocessing.get_context("spawn")


class WorkerProcess(Protocol):
    """What the pool needs of a worker process (a ``multiprocessing`` process is one)."""

    @property
    def pid(self) -> int | None: ...

    @property
    def exitcode(self) -> int | None: ...

    def is_alive(self) -> bool: ...

    def join(self, timeout: float | None = None) -> None: ...


class WorkerPipe(Protocol):
    """The daemon's end of a worker's pipe (a ``multiprocessing`` connection is one)."""

    def poll(self, timeout: float | None = 0.0) -> bool: ...

    def recv(self) -> Any: ...

    def send(self, obj: Any) -> None: ...

    def close(self) -> None: ...

    def fileno(self) -> int: ...


class Host(Protocol):
    def start_worker(self, target: Any, spec: Any, name: str) -> tuple[WorkerProcess, WorkerPipe]:
        """Start ``target(spec, pipe)`` in a new process; its process and the daemon's pipe end."""
        ...

    def stop_worker(self, pid: int) -> None:
        """SIGTERM a worker process: it stops at its next step (a process that is gone is no
        error). Only a starting worker needs it; a ready one reads its pipe."""
        ...

    def kill_worker(self, pid: int) -> None:
        """SIGKILL a worker process (a process that is gone is no error)."""
        ...

    def kill_browser(self, pgid: int | None, profile_dir: Path | None) -> None:
        """SIGKILL a worker's browser: its process group, and whatever carries its profile."""
        ...

    def browser_mb(self, pgid: int) -> float:
        """A local browser's memory: PSS summed over its process group, in MB."""
        ...

    def memory(self) -> MemoryView:
        """The memory limit that applies (cgroup's or the machine's) and its use."""
        ...


class System:
    """The real operating system."""

    def start_worker(self, target: Any, spec: Any, name: str) -> tuple[WorkerProcess, WorkerPipe]:
        parent_conn, child_conn = _SPAWN.Pipe()
        process = _SPAWN.Process(target=target, args=(spec, child_conn), name=name)
        process.start()
        child_conn.close()
        return process, parent_conn

    def stop_worker(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def kill_worker(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill_browser(self, pgid: int | None, profile_dir: Path | None) -> None:
        if pgid:
            kill_group(pgid)
        if profile_dir is not None:
            kill_browser(profile_dir)

    def browser_mb(self, pgid: int) -> float:
        return group_pss_mb(pgid)

    def memory(self) -> MemoryView:
        return memory.view()
