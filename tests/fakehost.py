"""A stand-in for the operating system under the pool (coupad.host.Host), for policy tests
that drive ``Daemon.step(now)`` with a stepped clock: no process is started, killed or
measured. Each started worker is a :class:`FakeWorker` whose life the test decides; what the
daemon sends it is kept in ``sent``, what it "says" the test hands to ``Daemon.on_message``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coupad.memory import MemoryView
from coupad.messages import decode

_PIDS = itertools.count(900_000)


@dataclass
class FakeWorker:
    name: str
    pid: int = field(default_factory=lambda: next(_PIDS))
    exitcode: int | None = None
    sent: list[Any] = field(default_factory=list)  # messages from the daemon, decoded
    killed: bool = False
    terminated: bool = False  # sent SIGTERM

    def is_alive(self) -> bool:
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        pass

    def exit(self, code: int) -> None:
        self.exitcode = code

    # the daemon's end of the pipe
    def poll(self, timeout: float | None = 0.0) -> bool:
        return False

    def recv(self) -> Any:
        raise EOFError

    def send(self, obj: Any) -> None:
        if self.exitcode is not None:
            raise BrokenPipeError("the worker has exited")
        self.sent.append(decode(obj))

    def close(self) -> None:
        pass

    def fileno(self) -> int:
        raise OSError("a fake worker has no file descriptor")


@dataclass
class FakeHost:
    """What the pool and daemon see of the machine, set by the test."""

    started: list[FakeWorker] = field(default_factory=list)
    browser_mbs: dict[int, float] = field(default_factory=dict)  # by pgid
    pressure: float = 0.1  # of the memory limit in use
    exit_at_once: int | None = None  # every new worker exits with this code at once

    def start_worker(self, target: Any, spec: Any, name: str) -> tuple[FakeWorker, FakeWorker]:
        worker = FakeWorker(name=name)
        if self.exit_at_once is not None:
            worker.exit(self.exit_at_once)
        self.started.append(worker)
        return worker, worker

    def stop_worker(self, pid: int) -> None:
        for worker in self.started:
            if worker.pid == pid and worker.exitcode is None:
                worker.terminated = True

    def kill_worker(self, pid: int) -> None:
        for worker in self.started:
            if worker.pid == pid and worker.exitcode is None:
                worker.killed = True
                worker.exit(-9)

    def kill_browser(self, pgid: int | None, profile_dir: Path | None) -> None:
        pass

    def browser_mb(self, pgid: int) -> float:
        return self.browser_mbs.get(pgid, 100.0)

    def memory(self) -> MemoryView:
        limit = 8 * 1024 ** 3
        return MemoryView(limit=limit, used=int(limit * self.pressure), source="test")
